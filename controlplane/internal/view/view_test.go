package view

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func port(svc string, p uint32, eps ...string) *doormanv1.ServicePort {
	sp := &doormanv1.ServicePort{Namespace: "ns", Name: svc, Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.1", Port: p}
	for _, e := range eps {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: e, Port: 8080})
	}
	return sp
}

func shared(sp *doormanv1.ServicePort) map[string]model.Value {
	return map[string]model.Value{doormanv1.ServicePortKey(sp): {Default: sp}}
}

// check recomputes every tracked node's digests from its entries, the way
// an agent does, and compares them with what the view keeps incrementally.
func check(t *testing.T, v *View) {
	t.Helper()
	for _, name := range v.Nodes() {
		entries, err := v.Entries(name)
		if err != nil {
			t.Fatal(err)
		}
		var d doormanv1.Digests
		var byBucket []string
		for _, e := range entries {
			d.Toggle(e.Key, e.Digest)
		}
		for b := range uint32(doormanv1.Buckets) {
			for _, e := range v.BucketEntries(name, b) {
				byBucket = append(byBucket, e.Key)
			}
		}
		var keys []string
		for _, e := range entries {
			keys = append(keys, e.Key)
		}
		slices.Sort(byBucket)
		if diff := cmp.Diff(keys, byBucket); diff != "" {
			t.Errorf("node %s: bucket entries (-entries +buckets):\n%s", name, diff)
		}
		var got [doormanv1.Buckets]uint64
		digests := v.BucketDigests(name)
		for b := range got {
			got[b] = digests.Bucket(uint32(b))
		}
		if got != [doormanv1.Buckets]uint64(d.BucketList()) {
			t.Errorf("node %s: bucket digests differ from the entries'", name)
		}
		if v.Digest(name) != d.View() {
			t.Errorf("node %s: view digest %x, entries give %x", name, v.Digest(name), d.View())
		}
		own, shared, err := v.Full(name)
		if err != nil {
			t.Fatal(err)
		}
		var body doormanv1.SyncResponse
		if err := proto.Unmarshal(shared.Bytes, &body); err != nil {
			t.Fatal(err)
		}
		var want, full []string
		for _, e := range entries {
			want = append(want, fmt.Sprintf("%s %x", e.Key, e.Digest))
		}
		for _, e := range own {
			full = append(full, fmt.Sprintf("%s %x", e.Key, e.Digest))
		}
		for _, e := range body.GetUpserts() {
			full = append(full, fmt.Sprintf("%s %x", e.GetKey(), e.GetDigest()))
		}
		slices.Sort(full)
		if diff := cmp.Diff(want, full); diff != "" {
			t.Errorf("node %s: full view, own and shared (-entries +full):\n%s", name, diff)
		}
		if shared.Entries != len(body.GetUpserts()) {
			t.Errorf("node %s: shared body says %d entries, holds %d", name, shared.Entries, len(body.GetUpserts()))
		}
		if v.Count(name) != len(entries) {
			t.Errorf("node %s: Count %d, %d entries", name, v.Count(name), len(entries))
		}
	}
}

func nodeValue(name, zone string) *doormanv1.Node {
	return &doormanv1.Node{Name: name, Zone: zone, NodeportAddresses: []string{"172.18.0.1"}}
}

func TestDigestsFollowChanges(t *testing.T) {
	v := New(100, 0)
	mustNode := func(name, zone string) {
		if _, err := v.SetNode(name, nodeValue(name, zone)); err != nil {
			t.Fatal(err)
		}
	}
	mustSvc := func(id string, vals map[string]model.Value) bool {
		changed, err := v.SetService(id, vals)
		if err != nil {
			t.Fatal(err)
		}
		return changed
	}
	local := func(eps map[string][]string) map[string]model.Value {
		val := model.Value{Default: port("local", 80), ByNode: map[string]*doormanv1.ServicePort{}}
		for n, e := range eps {
			val.ByNode[n] = port("local", 80, e...)
		}
		return map[string]model.Value{doormanv1.ServicePortKey(val.Default): val}
	}
	zonal := func(z1 ...string) map[string]model.Value {
		val := model.Value{Default: port("zonal", 80, "10.2.0.1", "10.2.0.2"), ByZone: map[string]*doormanv1.ServicePort{"z1": port("zonal", 80, z1...)}}
		return map[string]model.Value{doormanv1.ServicePortKey(val.Default): val}
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"nodes", func() { mustNode("n1", "z1"); mustNode("n2", "z2"); mustNode("n3", "z1") }},
		{"shared service", func() { mustSvc("ns/a", shared(port("a", 80, "10.1.0.1"))) }},
		{"local service", func() { mustSvc("ns/local", local(map[string][]string{"n1": {"10.3.0.1"}, "n2": {"10.3.0.2"}})) }},
		{"zonal service", func() { mustSvc("ns/zonal", zonal("10.2.0.1")) }},
		{"session for a node without object", func() { v.Acquire("n9") }},
		{"local endpoints move", func() {
			mustSvc("ns/local", local(map[string][]string{"n2": {"10.3.0.2"}, "n3": {"10.3.0.3"}, "n9": {"10.3.0.9"}}))
		}},
		{"n3 changes zone", func() { mustNode("n3", "z2") }},
		{"n2 moves into z1", func() { mustNode("n2", "z1") }},
		{"zonal override changes", func() { mustSvc("ns/zonal", zonal("10.2.0.2")) }},
		{"override equal to default dropped", func() {
			mustSvc("ns/zonal", zonal("10.2.0.1", "10.2.0.2"))
			if n := v.Stats().Variants; n != 1 {
				t.Errorf("variants = %d, want 1 (only ns/local)", n)
			}
		}},
		{"n1 deleted", func() {
			if _, err := v.SetNode("n1", nil); err != nil {
				t.Fatal(err)
			}
			if v.Known("n1") {
				t.Error("n1 still tracked")
			}
		}},
		{"service removed", func() { mustSvc("ns/local", nil) }},
		{"session ends", func() { v.Release("n9") }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.do()
			check(t, v)
		})
	}
}

func TestChangeLog(t *testing.T) {
	v := New(1000, 0)
	for _, n := range []string{"n1", "n2"} {
		if _, err := v.SetNode(n, nodeValue(n, "")); err != nil {
			t.Fatal(err)
		}
	}
	start := v.Version()
	set := func(id string, vals map[string]model.Value) {
		t.Helper()
		if _, err := v.SetService(id, vals); err != nil {
			t.Fatal(err)
		}
	}
	set("ns/a", shared(port("a", 80, "10.1.0.1")))
	set("ns/b", shared(port("b", 80, "10.1.0.2")))
	set("ns/a", shared(port("a", 80, "10.1.0.3")))
	localKey := doormanv1.ServicePortKey(port("l", 80))
	set("ns/l", map[string]model.Value{localKey: {Default: port("l", 80), ByNode: map[string]*doormanv1.ServicePort{"n1": port("l", 80, "10.9.0.1")}}})
	afterShared := v.Version()
	set("ns/l", map[string]model.Value{localKey: {Default: port("l", 80), ByNode: map[string]*doormanv1.ServicePort{"n1": port("l", 80, "10.9.0.2")}}})
	if changed, _ := v.SetService("ns/b", shared(port("b", 80, "10.1.0.2"))); changed {
		t.Error("setting an equal value reported a change")
	}
	if got := v.Version(); got != start+5 {
		t.Errorf("version %d, want %d (one per change)", got, start+5)
	}
	for _, tt := range []struct {
		node  string
		since uint64
		want  []string
	}{
		{"n1", start, []string{"ns/a:80/tcp/ipv4", "ns/b:80/tcp/ipv4", localKey}},
		{"n2", start, []string{"ns/a:80/tcp/ipv4", "ns/b:80/tcp/ipv4", localKey}},
		{"n1", afterShared, []string{localKey}},
		{"n2", afterShared, nil},
	} {
		got, ok := v.Changed(tt.node, tt.since)
		if !ok {
			t.Fatalf("Changed(%s, %d) truncated", tt.node, tt.since)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Changed(%s, %d) (-want +got):\n%s", tt.node, tt.since, diff)
		}
	}
	if v.Desired("n2") != afterShared || v.Desired("n1") != v.Version() {
		t.Errorf("desired n1=%d n2=%d, want %d and %d", v.Desired("n1"), v.Desired("n2"), v.Version(), afterShared)
	}
}

func TestLogIsBounded(t *testing.T) {
	v := New(0, 16)
	for i := range 100 {
		if _, err := v.SetService(fmt.Sprintf("ns/s%d", i%10), shared(port(fmt.Sprintf("s%d", i%10), 80, fmt.Sprintf("10.1.0.%d", i)))); err != nil {
			t.Fatal(err)
		}
		if n := v.Stats().LogRecords; n > 16 {
			t.Fatalf("log holds %d records, limit 16", n)
		}
	}
	if _, ok := v.Changed("n1", 50); ok {
		t.Error("Changed reached back past the truncated log")
	}
	if _, ok := v.Changed("n1", v.Version()-5); !ok {
		t.Error("Changed cannot reach a recent version")
	}
}

func TestEncodeErrorNamesService(t *testing.T) {
	v := New(0, 0)
	_, err := v.SetService("ns/x", map[string]model.Value{"wrong-key": {Default: port("x", 80)}})
	if err == nil || err.Error() != "service ns/x: key wrong-key: value is keyed ns/x:80/tcp/ipv4" {
		t.Errorf("error = %v", err)
	}
	if v.Stats().Keys != 0 {
		t.Error("a failed SetService left keys behind")
	}
}

// A node override equal to the default still stands before the node's
// zone's: every endpoint is hinted for the node, one of them for its zone.
func TestNodeOverrideEqualToDefault(t *testing.T) {
	all, zoneOnly := port("svc", 80, "10.1.0.1", "10.1.0.2"), port("svc", 80, "10.1.0.2")
	tests := []struct {
		name  string
		value model.Value
		want  map[string]*doormanv1.ServicePort // by node, all in zone z1
	}{
		{
			name:  "node and zone overrides",
			value: model.Value{Default: all, ByNode: map[string]*doormanv1.ServicePort{"n1": all}, ByZone: map[string]*doormanv1.ServicePort{"z1": zoneOnly}},
			want:  map[string]*doormanv1.ServicePort{"n1": all, "n2": zoneOnly},
		},
		{
			name:  "node overrides only",
			value: model.Value{Default: all, ByNode: map[string]*doormanv1.ServicePort{"n1": all, "n2": zoneOnly}},
			want:  map[string]*doormanv1.ServicePort{"n1": all, "n2": zoneOnly},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := New(1, 0)
			for _, n := range []string{"n1", "n2"} {
				if _, err := v.SetNode(n, nodeValue(n, "z1")); err != nil {
					t.Fatal(err)
				}
			}
			key := doormanv1.ServicePortKey(all)
			if _, err := v.SetService("ns/svc", map[string]model.Value{key: tt.value}); err != nil {
				t.Fatal(err)
			}
			for n, sp := range tt.want {
				want, err := wire.ServicePort(sp)
				if err != nil {
					t.Fatal(err)
				}
				if got := v.Lookup(n, key); got == nil || got.Digest != want.Digest {
					t.Errorf("node %s: entry %v, want the one of %v", n, got, sp.GetEndpoints())
				}
			}
			check(t, v)
		})
	}
}

// Reserve keeps what the view holds: a Service set before stays, and
// removing it afterwards removes its entry.
func TestReserveKeepsEntries(t *testing.T) {
	v := New(1, 0)
	if _, err := v.SetNode("n1", nodeValue("n1", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.SetService("ns/a", shared(port("a", 80, "10.1.0.1"))); err != nil {
		t.Fatal(err)
	}
	v.Reserve(1000)
	if _, err := v.SetService("ns/b", shared(port("b", 80, "10.1.0.2"))); err != nil {
		t.Fatal(err)
	}
	if st := v.Stats(); st.Keys != 2 {
		t.Fatalf("%d keys after Reserve, want 2", st.Keys)
	}
	check(t, v)
	if changed, err := v.SetService("ns/a", nil); err != nil || !changed {
		t.Fatalf("removing a: changed %v, %v; want its entry gone", changed, err)
	}
	if st := v.Stats(); st.Keys != 1 {
		t.Errorf("%d keys after removing a, want 1", st.Keys)
	}
	check(t, v)
}
