package model

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// change is one informer event fed to a Model.
type change func(*Model) []Result

// loadChanges are initial lists as informers deliver them, Services and
// slices interleaved, with address conflicts, a slice whose label moves,
// deletions and a refused Service.
func loadChanges() []change {
	ipv4 := func(name, owner, ip string) *discoveryv1.EndpointSlice {
		s := slice(name, discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080, "dns": 5353}, ep{ip: ip, node: "n1"})
		s.Labels[LabelServiceName] = owner
		return s
	}
	return []change{
		func(m *Model) []Result { return m.SetSlice(ipv4("new-1", "new", "10.1.0.1")) },
		func(m *Model) []Result {
			return m.SetService(claimer("ns", "new", 20, "b", "10.0.0.2", externalIPs("10.0.0.1")))
		},
		func(m *Model) []Result { return m.SetService(claimer("ns", "old", 10, "a", "10.0.0.1")) },
		func(m *Model) []Result { return m.SetSlice(ipv4("old-1", "old", "10.1.0.2")) },
		func(m *Model) []Result { return m.SetSlice(ipv4("old-2", "old", "10.1.0.3")) },
		func(m *Model) []Result {
			return m.SetService(claimer("ns", "lb", 30, "c", "10.0.0.3", lbIPs("10.0.0.2")))
		},
		func(m *Model) []Result { return m.SetSlice(ipv4("old-2", "lb", "10.1.0.3")) },
		func(m *Model) []Result { return m.SetService(claimer("ns", "gone", 5, "d", "10.0.0.9")) },
		func(m *Model) []Result { return m.SetSlice(ipv4("gone-1", "gone", "10.1.0.9")) },
		func(m *Model) []Result { return m.DeleteService("ns", "gone") },
		func(m *Model) []Result {
			return m.SetService(claimer("ns", "bad", 40, "e", "10.0.0.4", func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"not-an-ip"} }))
		},
	}
}

// outcome is the last Result each Service was given, without what only
// says what changed (NewConflicts, NewlyInvalid).
func outcome(results []Result) map[string]Result {
	out := map[string]Result{}
	for _, r := range results {
		r.NewConflicts, r.NewlyInvalid = nil, false
		out[r.Service] = r
	}
	return out
}

func TestFlushEndsAsChangesOneByOne(t *testing.T) {
	incremental := New()
	var want []Result
	for _, c := range loadChanges() {
		want = append(want, c(incremental)...)
	}
	deferred := New()
	deferred.Defer()
	for i, c := range loadChanges() {
		if rs := c(deferred); len(rs) != 0 {
			t.Fatalf("change %d while deferred returned %d results, want none", i, len(rs))
		}
	}
	var got []Result
	deferred.Flush(func(r Result) { got = append(got, r) })
	opts := cmp.Options{
		protocmp.Transform(),
		cmp.Comparer(func(a, b error) bool { return fmt.Sprint(a) == fmt.Sprint(b) }),
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	}
	if diff := cmp.Diff(outcome(want), outcome(got), opts); diff != "" {
		t.Errorf("each Service's last Result (-one by one +flushed):\n%s", diff)
	}
	if diff := cmp.Diff(incremental.conflicts, deferred.conflicts, opts); diff != "" {
		t.Errorf("conflicts (-one by one +flushed):\n%s", diff)
	}
	if incremental.ConflictCount() != 4 || deferred.ConflictCount() != 4 {
		t.Errorf("ConflictCount: one by one %d, flushed %d, want 4 (an externalIP and a LoadBalancer IP on ClusterIPs, two ports each)", incremental.ConflictCount(), deferred.ConflictCount())
	}
	if r := outcome(got)["ns/bad"]; r.Err == nil {
		t.Error("the refused Service's flushed Result has no error")
	}
	// After Flush, changes are computed at once again.
	if rs := deferred.DeleteService("ns", "lb"); len(rs) == 0 {
		t.Error("a change after Flush returned no result")
	}
}

// TestFlushComputesEachServiceOnce pins what Defer saves when the
// initial lists load: one Result per Service, however many objects
// changed it, where the changes one by one give one per object. There
// are more Services than one batch, so that batches are computed while
// others are applied.
func TestFlushComputesEachServiceOnce(t *testing.T) {
	const services, slicesEach = flushBatch + 100, 2
	load := func(m *Model) int {
		n := 0
		for i := range services {
			name := fmt.Sprintf("web-%d", i)
			n += len(m.SetService(svc(func(s *corev1.Service) {
				s.Name = name
				s.Spec.ClusterIP, s.Spec.ClusterIPs = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), nil
			})))
			for j := range slicesEach {
				s := slice(fmt.Sprintf("%s-%d", name, j), discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: fmt.Sprintf("10.1.%d.%d", i%250, j+1)})
				s.Labels[LabelServiceName] = name
				n += len(m.SetSlice(s))
			}
		}
		return n
	}
	if got, want := load(New()), services*(1+slicesEach); got != want {
		t.Fatalf("one by one: %d results, want %d", got, want)
	}
	m := New()
	m.Defer()
	if n := load(m); n != 0 {
		t.Fatalf("deferred: %d results before Flush, want 0", n)
	}
	flushed := 0
	m.Flush(func(r Result) {
		flushed++
		if len(r.Values) != 1 || r.Err != nil || len(r.Values[r.Service+":http/tcp/ipv4"].Default.GetEndpoints()) != slicesEach {
			t.Errorf("Flush: %s has %d values (%v), want its one with an endpoint of each slice", r.Service, len(r.Values), r.Err)
		}
	})
	if flushed != services {
		t.Errorf("Flush: %d results, want %d", flushed, services)
	}
}
