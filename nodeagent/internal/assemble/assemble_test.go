package assemble

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// strictKernel holds what it was given, and refuses a change whose Old is
// not what it holds, a shard, or a port without its endpoints.
type strictKernel struct {
	held    map[string]*doormanv1.Entry
	fail    bool // the next Apply fails, changing nothing
	applies int
}

func (s *strictKernel) check(e *doormanv1.Entry) error {
	sp := e.GetServicePort()
	if sp.GetShard() || sp.GetEndpointsByNode() {
		return fmt.Errorf("entry %q reached the kernel unassembled", e.GetKey())
	}
	return nil
}

func (s *strictKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	for _, e := range view {
		if err := s.check(e); err != nil {
			return dataplane.Stats{}, err
		}
	}
	s.held = maps.Clone(view)
	return dataplane.Stats{NotProgrammed: map[string]error{"x": errors.New("left out")}}, nil
}

func (s *strictKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	s.applies++
	if s.fail {
		s.fail = false
		return dataplane.Stats{}, errors.New("refused")
	}
	for _, c := range changes {
		if held := s.held[c.Key]; held.GetDigest() != c.Old.GetDigest() || (held == nil) != (c.Old == nil) {
			return dataplane.Stats{}, fmt.Errorf("change of %q: old %016x, kernel holds %016x", c.Key, c.Old.GetDigest(), held.GetDigest())
		}
		if c.New != nil {
			if err := s.check(c.New); err != nil {
				return dataplane.Stats{}, err
			}
		}
	}
	for _, c := range changes {
		if c.New == nil {
			delete(s.held, c.Key)
		} else {
			s.held[c.Key] = c.New
		}
	}
	return dataplane.Stats{Ops: len(changes), NotProgrammed: map[string]error{"x": errors.New("left out")}}, nil
}

func (s *strictKernel) RetireUnused() (int, error) { return 0, nil }

func entry(t *testing.T, sp *doormanv1.ServicePort) *doormanv1.Entry {
	t.Helper()
	if err := doormanv1.ValidateServicePort(sp); err != nil {
		t.Fatal(err)
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

var nodes = []string{"n1", "n2", "n3", ""}

// randomEntry is a port (sent whole or by node) or a shard of one of three
// ports, with random endpoints.
func randomEntry(t *testing.T, r *rand.Rand) *doormanv1.Entry {
	name := fmt.Sprintf("svc%d", r.IntN(3))
	port := &doormanv1.ServicePort{
		Namespace: "ns", Name: name, PortName: "http", Port: 80, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: fmt.Sprintf("10.0.0.%d", r.IntN(3)+1), NodePort: 30080,
		ExternalPolicyLocal: r.IntN(2) == 0, InternalPolicyLocal: r.IntN(2) == 0,
	}
	var eps []*doormanv1.Endpoint
	for range r.IntN(4) {
		eps = append(eps, &doormanv1.Endpoint{Ip: fmt.Sprintf("10.1.%d.%d", r.IntN(2), r.IntN(4)+1), Port: 8080, Terminating: r.IntN(3) == 0})
	}
	switch r.IntN(3) {
	case 0: // sent whole
		port.Endpoints = eps
		return entry(t, port)
	case 1: // sent by node
		port.EndpointsByNode = true
		port.AssembleClusterEndpoints = port.InternalPolicyLocal && r.IntN(2) == 0
		return entry(t, port)
	}
	return entry(t, doormanv1.NewShard(port, nodes[r.IntN(len(nodes))], eps))
}

// Whatever arrives in whatever order, through whichever Applies (some
// refused by the kernel), the kernel holds exactly what a Sync of the
// whole view gives: each port sent by node assembled from the shards held
// now, no shard, every other entry as it is.
func TestApplyKeepsTheKernelAssembled(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	inner := &strictKernel{}
	k := Wrap(inner, "n1")
	view := map[string]*doormanv1.Entry{}
	if _, err := k.Sync(view); err != nil {
		t.Fatal(err)
	}
	for step := range 3000 {
		next := maps.Clone(view)
		for range r.IntN(4) + 1 {
			e := randomEntry(t, r)
			if old := next[e.GetKey()]; old != nil && r.IntN(4) == 0 {
				delete(next, e.GetKey())
				continue
			}
			if old := next[e.GetKey()]; old != nil && (kindOf(old) == shard) != (kindOf(e) == shard) {
				continue
			}
			next[e.GetKey()] = e
		}
		var changes []dataplane.Change
		for _, key := range slices.Sorted(maps.Keys(next)) {
			if old := view[key]; old.GetDigest() != next[key].GetDigest() {
				changes = append(changes, dataplane.Change{Key: key, Old: old, New: next[key]})
			}
		}
		for _, key := range slices.Sorted(maps.Keys(view)) {
			if _, ok := next[key]; !ok {
				changes = append(changes, dataplane.Change{Key: key, Old: view[key]})
			}
		}
		if r.IntN(10) == 0 {
			inner.fail = true
			if _, err := k.Apply(changes); err == nil && inner.fail {
				// Nothing reached the kernel: no failure to see.
				inner.fail = false
			} else if err == nil {
				t.Fatalf("step %d: the kernel refused, Apply said nothing", step)
			}
		}
		stats, err := k.Apply(changes)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if stats.NotProgrammed["x"] == nil {
			t.Fatalf("step %d: the kernel's list of entries left out was lost", step)
		}
		view = next
		want := &strictKernel{}
		if _, err := Wrap(want, "n1").Sync(view); err != nil {
			t.Fatal(err)
		}
		if !sameEntries(inner.held, want.held) {
			t.Fatalf("step %d: the kernel holds\n%v\nafter Applies, a Sync gives\n%v", step, digests(inner.held), digests(want.held))
		}
	}
	if inner.applies == 0 {
		t.Fatal("no Apply reached the kernel")
	}
}

func sameEntries(a, b map[string]*doormanv1.Entry) bool {
	return maps.EqualFunc(a, b, func(x, y *doormanv1.Entry) bool { return x.GetDigest() == y.GetDigest() })
}

func digests(m map[string]*doormanv1.Entry) map[string]string {
	out := map[string]string{}
	for k, e := range m {
		out[k] = fmt.Sprintf("%016x", e.GetDigest())
	}
	return out
}

// A port sent by node is programmed with this node's endpoints as local
// ones, every node's as the cluster's; a shard's change moves it.
func TestAssembledForThisNode(t *testing.T) {
	inner := &strictKernel{}
	k := Wrap(inner, "n1")
	port := &doormanv1.ServicePort{
		Namespace: "ns", Name: "web", PortName: "http", Port: 80, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.1", NodePort: 30080, ExternalPolicyLocal: true, EndpointsByNode: true,
	}
	ep := func(ip string) []*doormanv1.Endpoint { return []*doormanv1.Endpoint{{Ip: ip, Port: 8080}} }
	p, s1, s2 := entry(t, port), entry(t, doormanv1.NewShard(port, "n1", ep("10.1.0.1"))), entry(t, doormanv1.NewShard(port, "n2", ep("10.1.0.2")))
	if _, err := k.Sync(map[string]*doormanv1.Entry{p.GetKey(): p, s1.GetKey(): s1, s2.GetKey(): s2}); err != nil {
		t.Fatal(err)
	}
	got := inner.held["ns/web:http/tcp/ipv4"].GetServicePort()
	if len(inner.held) != 1 || len(got.GetEndpoints()) != 2 || len(got.GetLocalEndpoints()) != 1 || got.GetLocalEndpoints()[0].GetIp() != "10.1.0.1" {
		t.Fatalf("kernel holds %v", inner.held)
	}
	moved := entry(t, doormanv1.NewShard(port, "n1", ep("10.1.0.3")))
	if _, err := k.Apply([]dataplane.Change{{Key: moved.GetKey(), Old: s1, New: moved}}); err != nil {
		t.Fatal(err)
	}
	got = inner.held["ns/web:http/tcp/ipv4"].GetServicePort()
	if got.GetLocalEndpoints()[0].GetIp() != "10.1.0.3" || got.GetEndpoints()[1].GetIp() != "10.1.0.3" {
		t.Fatalf("after the shard moved, kernel holds %v", got)
	}
}

// The ports sent by node and their shards carry no trigger time: the
// update does, and the agent measures it once when such an entry changes
// (or a shard goes), not when an update resends it or changes only other
// entries.
func TestTriggerTimeBesideByNodeEntries(t *testing.T) {
	a := agent.New("n1", state.New(), Wrap(&strictKernel{}, "n1"), nil)
	port := &doormanv1.ServicePort{
		Namespace: "ns", Name: "web", PortName: "http", Port: 80, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.1", NodePort: 30080, ExternalPolicyLocal: true, EndpointsByNode: true,
	}
	whole := &doormanv1.ServicePort{
		Namespace: "ns", Name: "db", PortName: "sql", Port: 5432, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.2", Endpoints: []*doormanv1.Endpoint{{Ip: "10.1.1.1", Port: 5432}},
	}
	ep := func(ip string) []*doormanv1.Endpoint { return []*doormanv1.Endpoint{{Ip: ip, Port: 8080}} }
	p, db := entry(t, port), entry(t, whole)
	s1, s2 := entry(t, doormanv1.NewShard(port, "n1", ep("10.1.0.1"))), entry(t, doormanv1.NewShard(port, "n2", ep("10.1.0.2")))
	s2moved := entry(t, doormanv1.NewShard(port, "n2", ep("10.1.0.3")))
	whole.Endpoints[0].Port = 5433
	db2 := entry(t, whole)
	view := func(es ...*doormanv1.Entry) uint64 {
		var d doormanv1.Digests
		for _, e := range es {
			d.Toggle(e.GetKey(), e.GetDigest())
		}
		return d.View()
	}
	for _, tc := range []struct {
		name   string
		update *doormanv1.SyncResponse
		want   []int64
	}{
		{"full update", &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{p, s1, s2, db}, ViewDigest: view(p, s1, s2, db)}, nil},
		{"a shard changed", &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{s2moved}, ViewDigest: view(p, s1, s2moved, db), TriggerTimeUnixNano: 300}, []int64{300}},
		{"the same trigger time again", &doormanv1.SyncResponse{Version: 3, Upserts: []*doormanv1.Entry{s2}, ViewDigest: view(p, s1, s2, db), TriggerTimeUnixNano: 300}, nil},
		{"a shard removed", &doormanv1.SyncResponse{Version: 4, Removals: []string{s2.GetKey()}, ViewDigest: view(p, s1, db), TriggerTimeUnixNano: 400}, []int64{400}},
		{"only a port sent whole changed", &doormanv1.SyncResponse{Version: 5, Upserts: []*doormanv1.Entry{db2}, ViewDigest: view(p, s1, db2), TriggerTimeUnixNano: 500}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := a.Handle(tc.update)
			if out.Err != nil || out.Reply.GetAck() == nil {
				t.Fatalf("Handle: %v, reply %v", out.Err, out.Reply)
			}
			if diff := cmp.Diff(tc.want, out.TriggerTimes); diff != "" {
				t.Errorf("trigger times (-want +got):\n%s", diff)
			}
		})
	}
}
