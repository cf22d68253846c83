package agent

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// driftKernel is the kernel in memory, reporting ops for each Sync as the
// test sets them: a kernel that differs from the view needs ops to be put
// back. RetireUnused deletes two chains, or fails as the Fake is told.
type driftKernel struct {
	*dataplane.Fake
	syncOps int
	// unchanged: nobody committed since the last own commit.
	unchanged bool
}

func (k *driftKernel) Unchanged() bool { return k.unchanged }

func (k *driftKernel) RetireUnused() (int, error) {
	_, err := k.Fake.RetireUnused()
	return 2, err
}

func (k *driftKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	_, err := k.Fake.Sync(view)
	return dataplane.Stats{Ops: k.syncOps}, err
}

func TestResync(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	full := &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}
	for _, tc := range []struct {
		name        string
		update      bool // a first update programmed the view
		trigger     Trigger
		syncOps     int
		syncErr     error
		retireErr   error
		unchanged   bool
		want        ResyncOutcome
		wantCalls   []string
		wantRepairs uint64
		wantSyncs   uint64 // full syncs, the first update's included
	}{
		{name: "no view yet: nothing to repair", trigger: TriggerForeignChange,
			want: ResyncOutcome{Trigger: TriggerForeignChange, Skipped: true}},
		{name: "foreign change that left the kernel right", update: true, trigger: TriggerForeignChange,
			want: ResyncOutcome{Trigger: TriggerForeignChange}, wantCalls: []string{"sync"}, wantSyncs: 2},
		{name: "foreign change repaired", update: true, trigger: TriggerForeignChange, syncOps: 3,
			want: ResyncOutcome{Trigger: TriggerForeignChange, Ops: 3, Repaired: true}, wantCalls: []string{"sync"}, wantRepairs: 1, wantSyncs: 2},
		{name: "lost events, kernel changed", update: true, trigger: TriggerEventsLost, syncOps: 1,
			want: ResyncOutcome{Trigger: TriggerEventsLost, Ops: 1, Repaired: true}, wantCalls: []string{"sync"}, wantRepairs: 1, wantSyncs: 2},
		{name: "periodic, kernel right: unused chains retired, not drift", update: true, trigger: TriggerPeriodic,
			want: ResyncOutcome{Trigger: TriggerPeriodic, Retired: 2}, wantCalls: []string{"sync", "retire"}, wantSyncs: 2},
		{name: "periodic, kernel changed: drift (Sync never retires chains)", update: true, trigger: TriggerPeriodic, syncOps: 2,
			want: ResyncOutcome{Trigger: TriggerPeriodic, Ops: 2, Repaired: true, Retired: 2}, wantCalls: []string{"sync", "retire"}, wantRepairs: 1, wantSyncs: 2},
		{name: "periodic, a chain cannot be retired: reported, not drift", update: true, trigger: TriggerPeriodic, retireErr: errors.New("EPERM"),
			want: ResyncOutcome{Trigger: TriggerPeriodic, Retired: 2, RetireErr: errors.New("retire unused chains: EPERM")}, wantCalls: []string{"sync", "retire"}, wantSyncs: 2},
		{name: "periodic, kernel unchanged since the own last commit: nothing read", update: true, trigger: TriggerPeriodic, unchanged: true,
			want: ResyncOutcome{Trigger: TriggerPeriodic, Unchanged: true, Retired: 2}, wantCalls: []string{"retire"}, wantSyncs: 1},
		{name: "foreign change: a full Sync whatever the kernel says", update: true, trigger: TriggerForeignChange, unchanged: true, syncOps: 1,
			want: ResyncOutcome{Trigger: TriggerForeignChange, Ops: 1, Repaired: true}, wantCalls: []string{"sync"}, wantRepairs: 1, wantSyncs: 2},
		{name: "lost events: a full Sync whatever the kernel says", update: true, trigger: TriggerEventsLost, unchanged: true,
			want: ResyncOutcome{Trigger: TriggerEventsLost}, wantCalls: []string{"sync"}, wantSyncs: 2},
		{name: "resync fails", update: true, trigger: TriggerForeignChange, syncErr: errors.New("EPERM"),
			want: ResyncOutcome{Trigger: TriggerForeignChange, Err: errors.New("resync (foreign change): EPERM")}, wantCalls: []string{"sync"}, wantSyncs: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &driftKernel{Fake: newKernel()}
			a := New("node-1", state.New(), k, nil)
			if tc.update {
				if out := a.Handle(full); out.Err != nil {
					t.Fatal(out.Err)
				}
			}
			k.ResetCalls()
			k.FailSyncs(tc.syncErr, 1)
			k.FailRetire(tc.retireErr)
			k.syncOps, k.unchanged = tc.syncOps, tc.unchanged
			got := a.Resync(tc.trigger)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y error) bool {
				return (x == nil) == (y == nil) && (x == nil || x.Error() == y.Error())
			})); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantCalls, k.Calls()); diff != "" {
				t.Errorf("kernel calls (-want +got):\n%s", diff)
			}
			c := a.Counters()
			if c.DriftRepairs != tc.wantRepairs || c.FullSyncs != tc.wantSyncs {
				t.Errorf("drift repairs %d, full syncs %d; want %d, %d", c.DriftRepairs, c.FullSyncs, tc.wantRepairs, tc.wantSyncs)
			}
			if tc.syncErr != nil {
				// The next update programs the whole view again.
				k.ResetCalls()
				web2 := servicePort(t, "web", "10.244.1.2")
				if out := a.Handle(&doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2)}); out.Err != nil {
					t.Fatal(out.Err)
				}
				if diff := cmp.Diff([]string{"sync"}, k.Calls()); diff != "" {
					t.Errorf("kernel calls of the next update (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestResyncProgramsCachedView: a cached view that could not be programmed
// at start-up is programmed by the next resync.
func TestResyncProgramsCachedView(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	view, err := state.Restore(4, []*doormanv1.Entry{web})
	if err != nil {
		t.Fatal(err)
	}
	k := &driftKernel{Fake: newKernel()}
	k.FailSyncs(errors.New("EBUSY"), 1)
	a := New("node-1", view, k, nil)
	if _, _, err := a.Start(); err == nil {
		t.Fatal("Start succeeded, want the injected error")
	}
	if a.Ready() {
		t.Fatal("ready after a failed start")
	}
	k.syncOps, k.unchanged = 5, true
	out := a.Resync(TriggerPeriodic)
	if out.Err != nil || !a.Ready() {
		t.Fatalf("resync: %+v, ready %v", out, a.Ready())
	}
	if diff := cmp.Diff(byKey(web), k.Entries(), protocmp.Transform()); diff != "" {
		t.Errorf("kernel (-want +got):\n%s", diff)
	}
}

func TestNotProgrammed(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	db2 := servicePort(t, "db", "10.244.2.2")
	k := newKernel()
	a := New("node-1", state.New(), k, nil)
	k.FailSyncs(&dataplane.InvalidEntriesError{Entries: map[string]error{db.Key: errors.New(`entry "default/db:http/tcp/ipv4": bad address`)}}, 1)
	out := a.Handle(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)})
	if diff := cmp.Diff([]string{db.Key}, out.Reply.GetAck().GetNotProgrammed()); diff != "" {
		t.Errorf("ack not_programmed (-want +got):\n%s", diff)
	}
	want := []string{`default/db:http/tcp/ipv4: entry "default/db:http/tcp/ipv4": bad address`}
	if diff := cmp.Diff(want, a.Status(false).GetNotProgrammed()); diff != "" {
		t.Errorf("status not_programmed (-want +got):\n%s", diff)
	}
	// A resync whose Sync programs everything clears the list.
	if r := a.Resync(TriggerForeignChange); r.Err != nil || r.Warning != nil {
		t.Fatalf("resync: %+v", r)
	}
	if got := a.Status(false).GetNotProgrammed(); len(got) != 0 {
		t.Errorf("not programmed after a clean resync: %v", got)
	}
	out = a.Handle(&doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{db2}, ViewDigest: digestOf(web, db2)})
	if got := out.Reply.GetAck().GetNotProgrammed(); len(got) != 0 {
		t.Errorf("ack not_programmed after a good change: %v", got)
	}
}

func TestTriggerTimes(t *testing.T) {
	withTrigger := func(e *doormanv1.Entry, nanos int64) *doormanv1.Entry {
		sp := e.GetServicePort()
		sp.TriggerTimeUnixNano = nanos
		e.Digest, _ = doormanv1.ValueDigest(sp)
		return e
	}
	web := withTrigger(servicePort(t, "web", "10.244.1.1"), 100)
	db := servicePort(t, "db", "10.244.2.1")
	webSameTrigger := withTrigger(servicePort(t, "web", "10.244.1.3"), 100)
	webNewTrigger := withTrigger(servicePort(t, "web", "10.244.1.4"), 200)
	a := New("node-1", state.New(), newKernel(), nil)
	for _, tc := range []struct {
		name   string
		update *doormanv1.SyncResponse
		want   []int64
	}{
		{"full update: every trigger time", &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)}, []int64{100}},
		{"changed without a new trigger time", &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{webSameTrigger}, ViewDigest: digestOf(webSameTrigger, db)}, nil},
		{"new trigger time", &doormanv1.SyncResponse{Version: 3, Upserts: []*doormanv1.Entry{webNewTrigger}, ViewDigest: digestOf(webNewTrigger, db)}, []int64{200}},
		{"removal", &doormanv1.SyncResponse{Version: 4, Removals: []string{webNewTrigger.Key}, ViewDigest: digestOf(db)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := a.Handle(tc.update)
			if out.Err != nil {
				t.Fatal(out.Err)
			}
			if diff := cmp.Diff(tc.want, out.TriggerTimes); diff != "" {
				t.Errorf("trigger times (-want +got):\n%s", diff)
			}
		})
	}
}
