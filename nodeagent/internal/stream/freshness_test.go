package stream

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// replayingControlPlane sends the same update on every stream, as a
// replica whose informers stopped would, and counts streams and replies.
type replayingControlPlane struct {
	doormanv1.UnimplementedAgentServiceServer
	update  *doormanv1.SyncResponse
	streams atomic.Int32
	replies chan *doormanv1.SyncRequest
}

func (cp *replayingControlPlane) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	cp.streams.Add(1)
	if err := stream.Send(cp.update); err != nil {
		return err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return nil
		}
		cp.replies <- m
	}
}

// freshAndStale runs an agent that first applies web2 from a fresh control
// plane (endpointslices changed at 200), then only reaches a stale one that
// sends web's old endpoint, having seen endpointslices up to 150.
func freshAndStale(t *testing.T, acceptAfter time.Duration) (*agent.Agent, *memKernel, *replayingControlPlane, time.Time) {
	t.Helper()
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	n := &network{}
	fresh := newControlPlane()
	n.serve(t, "cp-fresh", fresh)
	stale := &replayingControlPlane{replies: make(chan *doormanv1.SyncRequest, 100),
		update: &doormanv1.SyncResponse{Version: 3, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web),
			Freshness: agent.Marker{"services": {Seen: 110, Changed: 100}, "endpointslices": {Seen: 150, Changed: 150}}}}
	lis := n.listen(t, "cp-stale")
	srv := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(srv, stale)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	k := &memKernel{}
	a := agent.New("node-1", state.New(), k, nil)
	targets := &targetList{}
	targets.set("passthrough:///cp-fresh")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Targets: targets.get, DialOptions: n.dialOptions(), Agent: a,
			MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, AcceptBehindAfter: acceptAfter})
	}()
	t.Cleanup(func() {
		cancel()
		if err := receive(t, done, "return from Run"); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	receive(t, fresh.hellos, "hello on the fresh control plane")
	fresh.updates <- &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2),
		Freshness: agent.Marker{"services": {Seen: 100, Changed: 100}, "endpointslices": {Seen: 200, Changed: 200}}}
	if r := receive(t, fresh.replies, "ack"); r.GetAck() == nil {
		t.Fatalf("reply %v, want an ack", r)
	}
	targets.set("passthrough:///cp-stale")
	moved := time.Now()
	fresh.drop <- struct{}{}
	return a, k, stale, moved
}

// TestRefusesStaleControlPlane: an update behind what the agent applied is
// refused (no reply, nothing applied), the stream ends and the agent
// keeps trying, with last_error naming the control plane and both markers.
func TestRefusesStaleControlPlane(t *testing.T) {
	web2 := servicePort(t, "web", "10.244.1.2")
	a, k, stale, _ := freshAndStale(t, -1)
	deadline := time.Now().Add(10 * time.Second)
	for stale.streams.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams to the stale control plane, want the agent to keep reconnecting", stale.streams.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case r := <-stale.replies:
		t.Errorf("the stale control plane got a reply: %v", r)
	default:
	}
	if diff := cmp.Diff(map[string]*doormanv1.Entry{web2.GetKey(): web2}, k.snapshot(), protocmp.Transform()); diff != "" {
		t.Errorf("kernel after the refusals (-want +got):\n%s", diff)
	}
	last := a.Status(false).GetLastError()
	for _, want := range []string{"cp-stale", "endpointslices seen 150 < changed 200", "endpointslices=150/150", "endpointslices=200"} {
		if !strings.Contains(last, want) {
			t.Errorf("last_error %q does not say %q", last, want)
		}
	}
}

// TestAcceptsBehindAfterPersistentRefusal: once refusals have lasted
// AcceptBehindAfter with nothing else accepted, the update is applied
// (every control plane is behind: the cluster's data went back).
func TestAcceptsBehindAfterPersistentRefusal(t *testing.T) {
	const after = 300 * time.Millisecond
	web := servicePort(t, "web", "10.244.1.1")
	a, k, stale, moved := freshAndStale(t, after)
	r := receive(t, stale.replies, "reply from the agent")
	accepted := time.Since(moved)
	if r.GetAck() == nil {
		t.Fatalf("reply %v, want an ack", r)
	}
	if accepted < after {
		t.Errorf("accepted %s after moving to the stale control plane, want refusals for at least %s", accepted, after)
	}
	if n := stale.streams.Load(); n < 2 {
		t.Errorf("%d streams to the stale control plane before it was accepted, want refusals first", n)
	}
	if diff := cmp.Diff(map[string]*doormanv1.Entry{web.GetKey(): web}, k.snapshot(), protocmp.Transform()); diff != "" {
		t.Errorf("kernel after accepting (-want +got):\n%s", diff)
	}
	if v := a.Status(false).GetVersion(); v != 3 {
		t.Errorf("version %d, want 3", v)
	}
}
