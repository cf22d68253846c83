package agent

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// notWithin fails unless nothing comes on ch within a short while.
func notWithin[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s before the start-up was done: %v", what, v)
	case <-time.After(100 * time.Millisecond):
	}
}

func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

// TestRestoringAgent: an agent made before its view is restored says in
// its Hello what the cache records, at once; an update that arrives
// meanwhile waits until the view is restored and programmed, then applies
// on top of it (the kernel: Sync of the cached view, then Apply).
func TestRestoringAgent(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	cached, err := state.Restore(7, []*doormanv1.Entry{web, db})
	if err != nil {
		t.Fatal(err)
	}
	k := newKernel()
	a := NewRestoring("node-1", cached.Holding(), k)
	if diff := cmp.Diff(cached.Holding(), a.Hello().GetHello().GetHolding(), protocmp.Transform()); diff != "" {
		t.Errorf("hello during the start-up (-want +got):\n%s", diff)
	}

	outs := make(chan Outcome, 1)
	go func() {
		outs <- a.Handle(&doormanv1.SyncResponse{Version: 8, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2, db)})
	}()
	notWithin(t, outs, "update handled")
	if calls := k.Calls(); len(calls) > 0 {
		t.Fatalf("kernel called before the start-up: %v", calls)
	}
	s := &fakeStore{}
	a.Restore(cached, s)
	if _, _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	notWithin(t, outs, "update handled")
	a.Open()
	out := within(t, outs, "update handled")
	if diff := cmp.Diff(ack(8, web2, db), out.Reply, protocmp.Transform()); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"sync", "apply"}, k.Calls()); diff != "" {
		t.Errorf("kernel calls (-want +got):\n%s", diff)
	}
	want := &doormanv1.Holding{Version: 8, ViewDigest: digestOf(web2, db), BucketDigests: a.Hello().GetHello().GetHolding().GetBucketDigests()}
	if diff := cmp.Diff(want, s.holding, protocmp.Transform()); diff != "" {
		t.Errorf("holding written with the update (-want +got):\n%s", diff)
	}
}

// TestRestoringAgentHelloStale: when the view restored is not what the
// Hello said (the cache's record), the update answered to that Hello is
// not applied and the stream is to be opened again; the next Hello says
// what the view holds, and updates apply again.
func TestRestoringAgentHelloStale(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	recorded, err := state.Restore(7, []*doormanv1.Entry{web, db})
	if err != nil {
		t.Fatal(err)
	}
	k := newKernel()
	a := NewRestoring("node-1", recorded.Holding(), k)
	_ = a.Hello()
	a.Restore(state.New(), nil) // the file was set aside: nothing restored
	if _, _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	a.Open()
	out := a.Handle(&doormanv1.SyncResponse{Version: 8, ViewDigest: digestOf(web, db)})
	if !out.Resume || out.Reply != nil || out.Err != nil {
		t.Fatalf("update after a stale hello: resume %v, reply %v, error %v; want a resume, no reply", out.Resume, out.Reply, out.Err)
	}
	if diff := cmp.Diff(&doormanv1.Holding{}, a.Hello().GetHello().GetHolding(), protocmp.Transform()); diff != "" {
		t.Errorf("hello after the start-up (-want +got):\n%s", diff)
	}
	out = a.Handle(&doormanv1.SyncResponse{Version: 8, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)})
	if diff := cmp.Diff(ack(8, web, db), out.Reply, protocmp.Transform()); diff != "" {
		t.Errorf("reply after the new hello (-want +got):\n%s", diff)
	}
}

// TestRestoringAgentWithoutRecord: with nothing recorded of the view, the
// Hello waits for the start-up and says what the restored view holds.
func TestRestoringAgentWithoutRecord(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	cached, err := state.Restore(3, []*doormanv1.Entry{web})
	if err != nil {
		t.Fatal(err)
	}
	a := NewRestoring("node-1", nil, newKernel())
	hellos := make(chan *doormanv1.Hello, 1)
	go func() { hellos <- a.Hello().GetHello() }()
	notWithin(t, hellos, "hello")
	a.Restore(cached, nil)
	if _, _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	a.Open()
	if diff := cmp.Diff(cached.Holding(), within(t, hellos, "hello").GetHolding(), protocmp.Transform()); diff != "" {
		t.Errorf("hello (-want +got):\n%s", diff)
	}
}
