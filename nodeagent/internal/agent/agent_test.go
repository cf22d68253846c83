package agent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// newKernel is the kernel in memory the agent tests drive.
func newKernel() *dataplane.Fake { return dataplane.NewFake(dataplane.Options{}) }

type fakeStore struct {
	version uint64
	held    map[string]*doormanv1.Entry
	err     error // next write fails
	calls   []string
	// freshness is the marker written with the view; staged, the one the
	// next write stores.
	freshness, staged map[string]uint64
	// holding is what the next write records of the view's Hello.
	holding *doormanv1.Holding
}

func (s *fakeStore) Freshness() map[string]uint64 { return maps.Clone(s.freshness) }

func (s *fakeStore) SetFreshness(m map[string]uint64) { s.staged = maps.Clone(m) }

func (s *fakeStore) SetHolding(h *doormanv1.Holding) { s.holding = h }

func (s *fakeStore) Save(version uint64, changes []state.Change) error {
	s.calls = append(s.calls, "save")
	if err := s.err; err != nil {
		s.err = nil
		return err
	}
	if s.held == nil {
		s.held = map[string]*doormanv1.Entry{}
	}
	for _, c := range changes {
		if c.New == nil {
			delete(s.held, c.Key)
		} else {
			s.held[c.Key] = c.New
		}
	}
	s.version, s.freshness = version, s.staged
	return nil
}

func (s *fakeStore) Replace(version uint64, view map[string]*doormanv1.Entry) error {
	s.calls = append(s.calls, "replace")
	if err := s.err; err != nil {
		s.err = nil
		return err
	}
	s.held, s.version, s.freshness = maps.Clone(view), version, s.staged
	return nil
}

// clusterIP gives each Service name its own ClusterIP, so that the
// kernel programs every Service of a view (no two claim one frontend).
func clusterIP(name string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	n := h.Sum32()
	return fmt.Sprintf("10.96.%d.%d", byte(n>>8), byte(n)|1)
}

func servicePort(t testing.TB, name string, endpoints ...string) *doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: name, PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: clusterIP(name), Port: 80,
	}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 8080})
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func digestOf(entries ...*doormanv1.Entry) uint64 {
	var d doormanv1.Digests
	for _, e := range entries {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return d.View()
}

func ack(version uint64, entries ...*doormanv1.Entry) *doormanv1.SyncRequest {
	return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: version, ViewDigest: digestOf(entries...)}}}
}

func ackNotProgrammed(r *doormanv1.SyncRequest, keys ...string) *doormanv1.SyncRequest {
	r.GetAck().NotProgrammed = keys
	return r
}

func byKey(entries ...*doormanv1.Entry) map[string]*doormanv1.Entry {
	m := map[string]*doormanv1.Entry{}
	for _, e := range entries {
		m[e.GetKey()] = e
	}
	return m
}

func TestHandle(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	db := servicePort(t, "db", "10.244.2.1")
	db2 := servicePort(t, "db", "10.244.2.2")
	full := &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)}
	change := &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2, db)}
	next := &doormanv1.SyncResponse{Version: 12, Removals: []string{db.Key}, ViewDigest: digestOf(web2)}
	// A broken message (an invalid entry is not: see invalid_test.go).
	bad := &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{web2, web2}}
	wrongDigest := &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{web2}, ViewDigest: 1}
	empty := &doormanv1.SyncResponse{Version: 11, ViewDigest: digestOf(web, db)}
	kernelErr := errors.New("netlink: no buffer space")
	partial := &dataplane.InvalidEntriesError{Entries: map[string]error{db.Key: errors.New("cannot render")}}

	type step struct {
		update    *doormanv1.SyncResponse
		applyErr  error
		syncErr   error
		syncFails int
		storeErr  error
		wantReply *doormanv1.SyncRequest
		wantCalls []string // kernel calls during this step
		wantErr   string   // substring of Outcome.Err
		warning   string   // substring of Outcome.Warning
		resume    bool
	}
	nack := func(version uint64, msg string) *doormanv1.SyncRequest {
		return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: version, Error: msg}}}
	}
	for _, tc := range []struct {
		name        string
		steps       []step
		wantKernel  map[string]*doormanv1.Entry
		wantStore   []string
		wantVersion uint64
		wantFrom    string
		// acks, nacks, last nack version, full syncs
		wantCounters Counters
	}{
		{
			name: "first update syncs the whole view, then changes apply",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: change, wantReply: ack(11, web2, db), wantCalls: []string{"apply"}},
			},
			wantKernel: byKey(web2, db), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, FullSyncs: 1},
		},
		{
			name: "an update that changes nothing touches no kernel",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: empty, wantReply: ack(11, web, db)},
			},
			wantKernel: byKey(web, db), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, FullSyncs: 1},
		},
		{
			name: "a malformed update is nacked and changes nothing",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: bad, wantReply: nack(11, `update 11: entry "default/web:http/tcp/ipv4" upserted twice`), wantErr: "upserted twice"},
				{update: change, wantReply: ack(11, web2, db), wantCalls: []string{"apply"}},
			},
			wantKernel: byKey(web2, db), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, Nacks: 1, LastNackVersion: 11, FullSyncs: 1},
		},
		{
			name: "a view digest mismatch is nacked and asks to resume",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: wrongDigest, wantErr: "view digest mismatch", resume: true},
			},
			wantKernel: byKey(web, db), wantStore: []string{"save"}, wantVersion: 10, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 1, Nacks: 1, LastNackVersion: 11, FullSyncs: 1},
		},
		{
			name: "a failed apply falls back to a full sync and acks",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: change, applyErr: kernelErr, wantReply: ack(11, web2, db), wantCalls: []string{"apply", "sync"}},
			},
			wantKernel: byKey(web2, db), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, FullSyncs: 2},
		},
		{
			name: "apply and a full sync fail once: back to the old view, the change applies",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: change, applyErr: kernelErr, syncErr: kernelErr, wantReply: ack(11, web2, db), wantCalls: []string{"apply", "sync", "sync", "apply"}},
			},
			wantKernel: byKey(web2, db), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, FullSyncs: 3},
		},
		{
			name: "apply and every sync fail: revert, nack, and sync on the next update",
			steps: []step{
				{update: full, wantReply: ack(10, web, db), wantCalls: []string{"sync"}},
				{update: change, applyErr: kernelErr, syncErr: kernelErr, syncFails: 3,
					wantReply: nack(11, "program view: apply: netlink: no buffer space; full sync: netlink: no buffer space; empty table: netlink: no buffer space"),
					wantCalls: []string{"apply", "sync", "sync", "sync"}, wantErr: "full sync"},
				{update: &doormanv1.SyncResponse{Version: 12, Removals: []string{db.Key}, ViewDigest: digestOf(web)}, wantReply: ack(12, web), wantCalls: []string{"sync"}},
			},
			// The next update removes db from the reverted view: web is back
			// to its first value, because the control plane's change came
			// relative to what was acknowledged.
			wantKernel: byKey(web), wantStore: []string{"save", "save"}, wantVersion: 12, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, Nacks: 1, LastNackVersion: 11, FullSyncs: 5},
		},
		{
			name: "the first sync fails: nack, nothing held, retried on the next update",
			steps: []step{
				{update: full, syncErr: kernelErr, syncFails: 2, wantReply: nack(10, "program view: netlink: no buffer space; empty table: netlink: no buffer space"),
					wantCalls: []string{"sync", "sync"}, wantErr: "program view"},
				{update: &doormanv1.SyncResponse{Version: 11, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}, wantReply: ack(11, web), wantCalls: []string{"sync"}},
			},
			wantKernel: byKey(web), wantStore: []string{"save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 1, Nacks: 1, LastNackVersion: 10, FullSyncs: 3},
		},
		{
			name: "entries the kernel leaves out do not hold back the others",
			steps: []step{
				{update: full, syncErr: partial, wantReply: ackNotProgrammed(ack(10, web, db), db.Key), wantCalls: []string{"sync"}, warning: "1 entries not programmed"},
				// A change of the left-out entry that Apply programs clears it.
				{update: &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{db2}, ViewDigest: digestOf(web, db2)}, wantReply: ack(11, web, db2), wantCalls: []string{"apply"}},
			},
			wantKernel: byKey(web, db2), wantStore: []string{"save", "save"}, wantVersion: 11, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 2, FullSyncs: 1},
		},
		{
			name: "a failed cache write still acks, and the next write replaces the file",
			steps: []step{
				{update: full, storeErr: errors.New("disk full"), wantReply: ack(10, web, db), wantCalls: []string{"sync"}, warning: "cache: disk full"},
				{update: change, wantReply: ack(11, web2, db), wantCalls: []string{"apply"}},
				{update: next, wantReply: ack(12, web2), wantCalls: []string{"apply"}},
			},
			wantKernel: byKey(web2), wantStore: []string{"save", "replace", "save"}, wantVersion: 12, wantFrom: LoadedFromStream, wantCounters: Counters{Acks: 3, FullSyncs: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel()
			s := &fakeStore{}
			a := New("node-1", state.New(), k, s)
			for i, st := range tc.steps {
				k.ResetCalls()
				k.FailApply(st.applyErr)
				k.FailSyncs(st.syncErr, st.syncFails)
				s.err = st.storeErr
				before := a.Status(true)
				out := a.Handle(st.update)
				if st.wantReply != nil {
					if diff := cmp.Diff(st.wantReply, out.Reply, protocmp.Transform()); diff != "" {
						t.Errorf("step %d reply (-want +got):\n%s", i, diff)
					}
				}
				if diff := cmp.Diff(st.wantCalls, k.Calls()); diff != "" {
					t.Errorf("step %d kernel calls (-want +got):\n%s", i, diff)
				}
				if !errContains(out.Err, st.wantErr) || !errContains(out.Warning, st.warning) {
					t.Errorf("step %d: err %v, warning %v; want %q, %q", i, out.Err, out.Warning, st.wantErr, st.warning)
				}
				if out.Resume != st.resume {
					t.Errorf("step %d: resume %v, want %v", i, out.Resume, st.resume)
				}
				if out.Err != nil {
					if _, ok := out.Reply.GetMessage().(*doormanv1.SyncRequest_Nack); !ok {
						t.Errorf("step %d: rejected update answered with %v", i, out.Reply)
					}
					after := a.Status(true)
					// A NACK moves only its counters and the last error.
					ignore := protocmp.IgnoreFields(&doormanv1.GetStateResponse{}, "last_error", "nacks", "last_nack_version", "full_syncs")
					if diff := cmp.Diff(before, after, protocmp.Transform(), ignore); diff != "" {
						t.Errorf("step %d: a nacked update changed the state (-want +got):\n%s", i, diff)
					}
				}
			}
			if diff := cmp.Diff(tc.wantKernel, k.Entries(), protocmp.Transform()); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantStore, s.calls); diff != "" {
				t.Errorf("store calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(k.Entries(), s.held, protocmp.Transform()); diff != "" {
				t.Errorf("store differs from kernel (-kernel +store):\n%s", diff)
			}
			c := a.Counters()
			got := Counters{Acks: c.Acks, Nacks: c.Nacks, LastNackVersion: c.LastNackVersion, FullSyncs: c.FullSyncs}
			if diff := cmp.Diff(tc.wantCounters, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			st := a.Status(false)
			if st.Version != tc.wantVersion || st.LoadedFrom != tc.wantFrom || !a.Ready() {
				t.Errorf("status version %d from %q ready %v; want %d from %q ready", st.Version, st.LoadedFrom, a.Ready(), tc.wantVersion, tc.wantFrom)
			}
		})
	}
}

func errContains(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

func TestStart(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	cached, err := state.Restore(7, []*doormanv1.Entry{web, db})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		view       *state.View
		syncErr    error
		wantCalls  []string
		wantReady  bool
		wantErr    bool
		wantFrom   string
		thenUpdate []string // kernel calls for a following change
	}{
		{name: "nothing cached: kernel untouched until the stream", view: state.New(), wantFrom: LoadedFromNone, thenUpdate: []string{"sync"}},
		{name: "cached view programmed before connecting", view: cached, wantCalls: []string{"sync"}, wantReady: true, wantFrom: LoadedFromCache, thenUpdate: []string{"apply"}},
		{name: "programming the cache fails", view: cached, syncErr: errors.New("EPERM"), wantCalls: []string{"sync"}, wantErr: true, wantFrom: LoadedFromCache, thenUpdate: []string{"sync"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			view, _ := state.Restore(tc.view.Version(), tc.view.Sorted())
			k := newKernel()
			k.FailSyncs(tc.syncErr, 1)
			a := New("node-1", view, k, nil)
			_, _, err := a.Start()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Start error = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.wantCalls, k.Calls()); diff != "" {
				t.Errorf("kernel calls (-want +got):\n%s", diff)
			}
			if a.Ready() != tc.wantReady {
				t.Errorf("ready = %v, want %v", a.Ready(), tc.wantReady)
			}
			hello := a.Hello().GetHello()
			if diff := cmp.Diff(&doormanv1.Hello{NodeName: "node-1", Holding: view.Holding()}, hello, protocmp.Transform()); diff != "" {
				t.Errorf("hello (-want +got):\n%s", diff)
			}
			if got := a.Status(false).LoadedFrom; got != tc.wantFrom {
				t.Errorf("loaded from %q, want %q", got, tc.wantFrom)
			}
			k.ResetCalls()
			web2 := servicePort(t, "web", "10.244.1.9")
			u := &doormanv1.SyncResponse{Version: 8, ReplacedBuckets: []uint32{doormanv1.Bucket(web.Key)}, Upserts: []*doormanv1.Entry{web2}}
			want := map[string]*doormanv1.Entry{web2.Key: web2}
			if view.Version() > 0 {
				u.Upserts = append(u.Upserts, proto.Clone(db).(*doormanv1.Entry))
				want[db.Key] = db
				if doormanv1.Bucket(db.Key) != doormanv1.Bucket(web.Key) {
					u.Upserts = u.Upserts[:1]
				}
			}
			u.ViewDigest = digestOf(slicesOf(want)...)
			out := a.Handle(u)
			if out.Err != nil {
				t.Fatalf("update after start: %v", out.Err)
			}
			if diff := cmp.Diff(tc.thenUpdate, k.Calls()); diff != "" {
				t.Errorf("kernel calls for the first update (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, k.Entries(), protocmp.Transform()); diff != "" {
				t.Errorf("kernel after the first update (-want +got):\n%s", diff)
			}
		})
	}
}

func slicesOf(m map[string]*doormanv1.Entry) []*doormanv1.Entry {
	var out []*doormanv1.Entry
	for _, e := range m {
		out = append(out, e)
	}
	return out
}

func TestStatus(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	node := &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "node-1"}}}
	node.Digest, _ = doormanv1.ValueDigest(node.GetNode())
	view, err := state.Restore(3, []*doormanv1.Entry{web, node})
	if err != nil {
		t.Fatal(err)
	}
	a := New("node-1", view, newKernel(), nil)
	a.SetConnection("cp-0:9400", true)
	a.SetError(errors.New("stream: EOF"))
	want := &doormanv1.GetStateResponse{
		NodeName: "node-1", Version: 3, ViewDigest: digestOf(web, node), Connected: true, ControlPlane: "cp-0:9400",
		LastError: "stream: EOF", LoadedFrom: LoadedFromCache, ServicePorts: 1, Entries: []*doormanv1.Entry{web, node},
	}
	if diff := cmp.Diff(want, a.Status(true), protocmp.Transform()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// TestApplyReportsLeftOut: after each Apply the agent lists what the
// dataplane says it leaves out, all of it (an Apply may program an entry
// the update did not carry, whose frontend it freed): the Ack and Status
// follow, and the Outcome warns only when the list changed.
func TestApplyReportsLeftOut(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	web3 := servicePort(t, "web", "10.244.1.3")
	db := servicePort(t, "db", "10.244.2.1")
	k := newKernel()
	a := New("node-1", state.New(), k, nil)
	conflict := map[string]error{db.Key: errors.New(`entry "default/db:http/tcp/ipv4": externalIP 10.96.0.10:80/tcp is the ClusterIP of "default/web:http/tcp/ipv4"`)}

	steps := []struct {
		name        string
		update      *doormanv1.SyncResponse
		leftOut     map[string]error
		wantListed  []string
		wantWarning bool
	}{
		{"first update", &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}, nil, nil, false},
		{"an entry left out", &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{db}, ViewDigest: digestOf(web, db)}, conflict, []string{db.Key}, true},
		{"still left out", &doormanv1.SyncResponse{Version: 3, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2, db)}, conflict, []string{db.Key}, false},
		{"programmed by an update that did not carry it", &doormanv1.SyncResponse{Version: 4, Upserts: []*doormanv1.Entry{web3}, ViewDigest: digestOf(web3, db)}, nil, nil, false},
	}
	for _, s := range steps {
		k.LeaveOut(s.leftOut)
		out := a.Handle(s.update)
		if out.Reply.GetAck() == nil {
			t.Fatalf("%s: %v, want an ack", s.name, out.Reply)
		}
		if got := out.Reply.GetAck().GetNotProgrammed(); !slices.Equal(got, s.wantListed) {
			t.Errorf("%s: ack lists %v, want %v", s.name, got, s.wantListed)
		}
		if got := len(a.Status(false).GetNotProgrammed()); got != len(s.wantListed) {
			t.Errorf("%s: status lists %d, want %d", s.name, got, len(s.wantListed))
		}
		if (out.Warning != nil) != s.wantWarning {
			t.Errorf("%s: warning %v, want one: %v", s.name, out.Warning, s.wantWarning)
		}
	}
}
