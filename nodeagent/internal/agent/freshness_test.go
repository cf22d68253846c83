package agent

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// rv is a resource's seen and changed resourceVersions.
func rv(seen, changed uint64) *doormanv1.ResourceVersions {
	return &doormanv1.ResourceVersions{Seen: seen, Changed: changed}
}

func TestBehind(t *testing.T) {
	for _, tt := range []struct {
		name string
		held Freshness
		got  Marker
		want []Lag
	}{
		{"nothing held", nil, Marker{"services": rv(5, 5)}, nil},
		{"no marker in the update", Freshness{"services": 5}, nil, nil},
		{"seen the change held", Freshness{"services": 5, "nodes": 7}, Marker{"services": rv(5, 5), "nodes": rv(7, 3)}, nil},
		{"seen past it, by a bookmark", Freshness{"services": 5}, Marker{"services": rv(9, 2)}, nil},
		{"behind on one", Freshness{"services": 5, "nodes": 7}, Marker{"services": rv(9, 9), "nodes": rv(6, 6)},
			[]Lag{{Resource: "nodes", Held: 7, Seen: 6}}},
		{"behind on two, ordered", Freshness{"services": 5, "endpointslices": 9}, Marker{"services": rv(4, 4), "endpointslices": rv(1, 1)},
			[]Lag{{Resource: "endpointslices", Held: 9, Seen: 1}, {Resource: "services", Held: 5, Seen: 4}}},
		{"a resource missing from the update is not compared", Freshness{"servicecidrs": 100, "services": 5}, Marker{"services": rv(5, 5)}, nil},
		{"a resource new in the update is not compared", Freshness{"services": 5}, Marker{"services": rv(5, 5), "servicecidrs": rv(1, 1)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Behind(tt.held, tt.got)); diff != "" {
				t.Errorf("Behind(%s, %s) (-want +got):\n%s", tt.held, tt.got, diff)
			}
		})
	}
}

func TestAdvance(t *testing.T) {
	held := Freshness{"services": 5, "nodes": 7, "servicecidrs": 3}
	got := Marker{"services": rv(12, 9), "nodes": rv(8, 2), "endpointslices": rv(4, 4)}
	if diff := cmp.Diff(Freshness{"services": 9, "nodes": 7, "servicecidrs": 3, "endpointslices": 4}, Advance(held, got, false)); diff != "" {
		t.Errorf("Advance (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Freshness{"services": 9, "nodes": 2, "servicecidrs": 3, "endpointslices": 4}, Advance(held, got, true)); diff != "" {
		t.Errorf("Advance accepting behind (-want +got):\n%s", diff)
	}
	if held["services"] != 5 {
		t.Errorf("Advance changed the marker held: %s", held)
	}
}

// A stream's marker: the first update's, then each later update's moved
// resources replace what the stream had.
func TestCarry(t *testing.T) {
	first := Marker{"services": rv(12, 9), "nodes": rv(8, 2)}
	held := Carry(nil, first)
	held = Carry(held, Marker{"endpointslices": rv(14, 14), "services": rv(14, 9)})
	want := Marker{"services": rv(14, 9), "nodes": rv(8, 2), "endpointslices": rv(14, 14)}
	if diff := cmp.Diff(want, held, protocmp.Transform()); diff != "" {
		t.Errorf("Carry (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, Carry(held, nil), protocmp.Transform()); diff != "" {
		t.Errorf("Carry of an update that moved nothing (-want +got):\n%s", diff)
	}
	if first["services"].GetSeen() != 12 || len(first) != 2 {
		t.Errorf("Carry changed an update's marker: %s", first)
	}
}

// An update behind what the node holds is refused whole: no kernel call,
// no cache write, no reply, the view as it was, and Status says why; an
// update that is not behind then applies and raises the marker, which the
// cache stores with the view.
func TestHandleRefusesBehind(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	k, s := newKernel(), &fakeStore{}
	a := New("n1", state.New(), k, s)
	first := &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2),
		Freshness: Marker{"services": rv(120, 100), "endpointslices": rv(200, 200)}}
	if out := a.Handle(first); out.Err != nil || out.Behind != nil {
		t.Fatalf("first update: err %v, behind %v", out.Err, out.Behind)
	}
	if diff := cmp.Diff(map[string]uint64{"services": 100, "endpointslices": 200}, s.freshness); diff != "" {
		t.Errorf("marker in the cache (-want +got):\n%s", diff)
	}
	calls, writes := len(k.Calls()), len(s.calls)

	// A stale replica: the old endpoint, endpointslices behind.
	stale := &doormanv1.SyncResponse{Version: 3, ReplacedBuckets: []uint32{doormanv1.Bucket(web.GetKey())}, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web),
		Freshness: Marker{"services": rv(110, 100), "endpointslices": rv(150, 150)}}
	out := a.Handle(stale)
	if out.Behind == nil {
		t.Fatalf("stale update not refused: %+v", out)
	}
	if out.Reply != nil || out.Err != nil {
		t.Errorf("refused update answered %v (err %v), want no reply", out.Reply, out.Err)
	}
	wantLags := []Lag{{Resource: "endpointslices", Held: 200, Seen: 150}}
	if diff := cmp.Diff(wantLags, out.Behind.Lags); diff != "" {
		t.Errorf("lags (-want +got):\n%s", diff)
	}
	if len(k.Calls()) != calls || len(s.calls) != writes {
		t.Errorf("refused update touched the kernel %v or the cache %v", k.Calls()[calls:], s.calls[writes:])
	}
	st := a.Status(true)
	if diff := cmp.Diff([]*doormanv1.Entry{web2}, st.GetEntries(), protocmp.Transform()); diff != "" {
		t.Errorf("view after the refusal (-want +got):\n%s", diff)
	}
	for _, want := range []string{"endpointslices seen 150 < changed 200", "endpointslices=150/150", "endpointslices=200"} {
		if !strings.Contains(out.Behind.Error(), want) {
			t.Errorf("refusal %q does not say %q", out.Behind.Error(), want)
		}
	}
	var be *BehindError
	if !errors.As(out.Behind, &be) || be.Version != 3 {
		t.Errorf("Behind = %v", out.Behind)
	}

	// A fresh update applies and raises the marker.
	next := &doormanv1.SyncResponse{Version: 11, Freshness: Marker{"services": rv(300, 120), "endpointslices": rv(300, 200)}, ViewDigest: digestOf(web2)}
	if out := a.Handle(next); out.Err != nil || out.Behind != nil {
		t.Fatalf("fresh update: err %v, behind %v", out.Err, out.Behind)
	}
	if diff := cmp.Diff(map[string]uint64{"services": 120, "endpointslices": 200}, s.freshness); diff != "" {
		t.Errorf("marker in the cache (-want +got):\n%s", diff)
	}
}

// HandleBehind applies an update although it is behind, and the marker
// held goes back with it: the next update at the restored revisions is not
// refused.
func TestHandleBehindFollowsRestoredCluster(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	s := &fakeStore{freshness: map[string]uint64{"services": 500}}
	a := New("n1", state.New(), newKernel(), s)
	restored := &doormanv1.SyncResponse{Version: 4, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web), Freshness: Marker{"services": rv(40, 40)}}
	if out := a.Handle(restored); out.Behind == nil {
		t.Fatal("update behind the cached marker not refused")
	}
	if out := a.HandleBehind(restored); out.Err != nil || out.Behind != nil {
		t.Fatalf("HandleBehind: err %v, behind %v", out.Err, out.Behind)
	}
	if diff := cmp.Diff(map[string]uint64{"services": 40}, s.freshness); diff != "" {
		t.Errorf("marker in the cache (-want +got):\n%s", diff)
	}
	next := &doormanv1.SyncResponse{Version: 5, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2), Freshness: Marker{"services": rv(41, 41)}}
	if out := a.Handle(next); out.Err != nil || out.Behind != nil {
		t.Fatalf("update after the restore: err %v, behind %v", out.Err, out.Behind)
	}
}
