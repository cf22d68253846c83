package agent

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestKernelRefusesAValue: a value the kernel refuses holds back neither
// the rest of its update nor later ones, and is not retried until it
// changes.
func TestKernelRefusesAValue(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	db := servicePort(t, "db", "10.244.2.1")
	lb := servicePort(t, "lb", "10.244.3.1")      // refused
	lbFix := servicePort(t, "lb", "10.244.3.2")   // taken
	lbWorse := servicePort(t, "lb", "10.244.3.3") // refused too
	refuse := map[uint64]bool{lb.GetDigest(): true, lbWorse.GetDigest(): true}
	nack := func(r *doormanv1.SyncRequest) bool { return r.GetNack() != nil }

	type step struct {
		name      string
		update    *doormanv1.SyncResponse
		wantCalls []string
		// wantApplied: the keys of the last Apply (nil: not checked).
		wantApplied   []string
		wantNack      bool
		wantErr       string // substring of the Nack's error
		wantNotProg   []string
		wantKernel    map[string]*doormanv1.Entry
		wantRejection uint64
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{
			name: "first update with a refused value among good ones",
			steps: []step{{
				name:   "full",
				update: &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web, db, lb}, ViewDigest: digestOf(web, db, lb)},
				// The full Sync fails; from an empty table, the changes in
				// halves (db | lb, web → lb | web); then lb alone once more.
				wantCalls:   []string{"sync", "sync", "apply", "apply", "apply", "apply", "apply", "apply"},
				wantNotProg: []string{lb.Key}, wantKernel: byKey(web, db), wantRejection: 1,
			}, {
				name:        "the same value again with a good change: not retried",
				update:      &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2, db, lb)},
				wantCalls:   []string{"apply"},
				wantApplied: []string{web2.Key},
				wantNotProg: []string{lb.Key}, wantKernel: byKey(web2, db), wantRejection: 1,
			}},
		},
		{
			name: "an update with only the refused value is nacked",
			steps: []step{{
				name:       "full",
				update:     &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)},
				wantCalls:  []string{"sync"},
				wantKernel: byKey(web, db),
			}, {
				name:   "only the bad value",
				update: &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{lb}, ViewDigest: digestOf(web, db, lb)},
				// Apply, full Sync, Sync back to the old view, lb alone.
				wantCalls: []string{"apply", "sync", "sync", "apply"},
				wantNack:  true, wantErr: `"default/lb:http/tcp/ipv4": entry "default/lb:http/tcp/ipv4": file exists`,
				wantKernel: byKey(web, db), wantRejection: 1,
			}, {
				name: "the same value again with a good change: the good one applies",
				// The control plane sends every key changed since the last
				// ack: lb again.
				update:      &doormanv1.SyncResponse{Version: 12, Upserts: []*doormanv1.Entry{lb, web2}, ViewDigest: digestOf(web2, db, lb)},
				wantCalls:   []string{"apply"},
				wantApplied: []string{web2.Key},
				wantNotProg: []string{lb.Key}, wantKernel: byKey(web2, db), wantRejection: 1,
			}, {
				name:      "the same value alone again: nothing changes, still listed",
				update:    &doormanv1.SyncResponse{Version: 13, Upserts: []*doormanv1.Entry{lb}, ViewDigest: digestOf(web2, db, lb)},
				wantCalls: nil, wantNotProg: []string{lb.Key}, wantKernel: byKey(web2, db), wantRejection: 1,
			}, {
				name:      "another refused value is tried, and nacked",
				update:    &doormanv1.SyncResponse{Version: 14, Upserts: []*doormanv1.Entry{lbWorse}, ViewDigest: digestOf(web2, db, lbWorse)},
				wantCalls: []string{"apply", "sync", "sync", "apply"},
				wantNack:  true, wantErr: "file exists",
				// The view keeps lb (version 12), which is still not in
				// the kernel.
				wantNotProg: []string{lb.Key}, wantKernel: byKey(web2, db), wantRejection: 2,
			}, {
				name:        "fixed: programmed, no longer listed",
				update:      &doormanv1.SyncResponse{Version: 15, Upserts: []*doormanv1.Entry{lbFix}, ViewDigest: digestOf(web2, db, lbFix)},
				wantCalls:   []string{"apply"},
				wantApplied: []string{lbFix.Key},
				wantKernel:  byKey(web2, db, lbFix), wantRejection: 2,
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKernel()
			k.Refuse(slices.Collect(maps.Keys(refuse))...)
			s := &fakeStore{}
			a := New("node-1", state.New(), k, s)
			for _, st := range tc.steps {
				k.ResetCalls()
				out := a.Handle(st.update)
				if diff := cmp.Diff(st.wantCalls, k.Calls()); diff != "" {
					t.Errorf("%s: kernel calls (-want +got):\n%s", st.name, diff)
				}
				if st.wantApplied != nil {
					var got []string
					for _, c := range k.LastApply() {
						got = append(got, c.Key)
					}
					if diff := cmp.Diff(st.wantApplied, got); diff != "" {
						t.Errorf("%s: keys of the last Apply (-want +got):\n%s", st.name, diff)
					}
				}
				if nack(out.Reply) != st.wantNack || (st.wantNack && !strings.Contains(out.Reply.GetNack().GetError(), st.wantErr)) {
					t.Fatalf("%s: reply %v, err %v; want nack %v with %q", st.name, out.Reply, out.Err, st.wantNack, st.wantErr)
				}
				if !st.wantNack {
					if out.Reply.GetAck().GetVersion() != st.update.GetVersion() || out.Reply.GetAck().GetViewDigest() != st.update.GetViewDigest() {
						t.Errorf("%s: ack %v, want version %d digest %x", st.name, out.Reply, st.update.GetVersion(), st.update.GetViewDigest())
					}
					if diff := cmp.Diff(st.wantNotProg, out.Reply.GetAck().GetNotProgrammed()); diff != "" {
						t.Errorf("%s: ack not_programmed (-want +got):\n%s", st.name, diff)
					}
				}
				status := a.Status(false)
				var listed []string
				for _, np := range status.GetNotProgrammed() {
					key, why, _ := strings.Cut(np, ": ")
					listed = append(listed, key)
					if !strings.Contains(why, "refused by the kernel") || !strings.Contains(why, "file exists") {
						t.Errorf("%s: status says %q", st.name, np)
					}
				}
				if diff := cmp.Diff(st.wantNotProg, listed); diff != "" {
					t.Errorf("%s: status not_programmed (-want +got):\n%s", st.name, diff)
				}
				if diff := cmp.Diff(st.wantKernel, k.Entries(), protocmp.Transform()); diff != "" {
					t.Errorf("%s: kernel (-want +got):\n%s", st.name, diff)
				}
				// The cache holds what the kernel holds: a restart programs
				// a view the kernel takes.
				if diff := cmp.Diff(k.Entries(), s.held, protocmp.Transform()); diff != "" {
					t.Errorf("%s: cache differs from the kernel (-kernel +cache):\n%s", st.name, diff)
				}
				c := a.Counters()
				if c.NotProgrammed != len(st.wantNotProg) || c.Rejections != st.wantRejection {
					t.Errorf("%s: counters not programmed %d, rejections %d; want %d, %d", st.name, c.NotProgrammed, c.Rejections, len(st.wantNotProg), st.wantRejection)
				}
			}

			// A full Sync leaves the refused value out and keeps the rest.
			want := maps.Clone(k.Entries())
			k.ResetCalls()
			if r := a.Resync(TriggerForeignChange); r.Err != nil {
				t.Fatalf("resync: %v", r.Err)
			}
			if diff := cmp.Diff(want, k.Entries(), protocmp.Transform()); diff != "" {
				t.Errorf("kernel after a resync (-want +got):\n%s", diff)
			}

			// A restart from the cache programs what the kernel holds (no
			// refused value), and says so in its Hello.
			restored, err := state.Restore(s.version, slices.Collect(maps.Values(s.held)))
			if err != nil {
				t.Fatal(err)
			}
			k.ResetCalls()
			b := New("node-1", restored, k, s)
			if _, _, err := b.Start(); err != nil {
				t.Fatalf("start from the cache: %v", err)
			}
			if diff := cmp.Diff(want, k.Entries(), protocmp.Transform()); diff != "" {
				t.Errorf("kernel after a restart (-want +got):\n%s", diff)
			}
			if got, want := b.Hello().GetHello().GetHolding().GetViewDigest(), digestOf(slices.Collect(maps.Values(want))...); got != want {
				t.Errorf("hello after a restart holds view %x, want the kernel's %x", got, want)
			}
		})
	}
}
