package app

import (
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// gatedKernel holds every Sync until gate is closed.
type gatedKernel struct {
	agent.Kernel
	gate chan struct{}
}

func (k *gatedKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	<-k.gate
	return k.Kernel.Sync(view)
}

// TestRestartHelloBeforeStartUp: a restarted agent opens its stream and
// says what its cache holds (as the cache records it) before it has
// programmed the cached view; an update that comes meanwhile waits for
// the start-up, then applies on top of the cached view.
func TestRestartHelloBeforeStartUp(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	cachePath := filepath.Join(t.TempDir(), "cache.db")
	view := entries(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	first := startAgent(t, ns, cachePath, lis.Addr().String())
	receive(t, cp.hellos, "hello")
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1\nlogs:\n%s", r, first.logs.String())
	}
	first.stop(t)

	gate := make(chan struct{})
	second := startAgentWith(t, ns, cachePath, func(c *Config) {
		c.ControlPlanes = []string{lis.Addr().String()}
		c.wrapKernel = func(inner agent.Kernel) agent.Kernel { return &gatedKernel{Kernel: inner, gate: gate} }
	})
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the agent stops: its start-up waits for it
	var h *doormanv1.Hello
	select {
	case h = <-cp.hellos:
	case <-time.After(20 * time.Second):
		t.Fatalf("no hello while the start-up Sync is held\nlogs:\n%s", second.logs.String())
	}
	var d doormanv1.Digests
	for _, e := range view {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	if diff := cmp.Diff(&doormanv1.Holding{Version: 1, ViewDigest: d.View(), BucketDigests: d.BucketList()}, h.GetHolding(), protocmp.Transform()); diff != "" {
		t.Errorf("hello during the start-up (-want +got):\n%s", diff)
	}
	cp.updates <- &doormanv1.SyncResponse{Version: 2, ViewDigest: d.View()}
	select {
	case r := <-cp.replies:
		t.Fatalf("reply %v before the cached view was programmed\nlogs:\n%s", r, second.logs.String())
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 2 {
		t.Fatalf("reply %v, want an ack of version 2\nlogs:\n%s", r, second.logs.String())
	}
	if line := logLine(second.logs.String(), "cached view programmed"); line == "" {
		t.Errorf("cached view not programmed; logs:\n%s", second.logs.String())
	}
}
