package app

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// heldKernel blocks each Apply while hold is armed, with the agent's
// update in progress (its lock held), until released.
type heldKernel struct {
	agent.Kernel
	hold    chan struct{} // armed: receives once Apply is blocked
	release chan struct{}
}

func (k *heldKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	select {
	case k.hold <- struct{}{}:
		<-k.release
	default:
	}
	return k.Kernel.Apply(changes)
}

// get answers path's status, failing when the agent does not answer in
// time.
func (r *agentRun) get(t *testing.T, path string) int {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(r.health, "/healthz") + path)
	if err != nil {
		t.Fatalf("GET %s while an update holds the agent: %v", path, err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestHealthWhileUpdateHoldsAgent: the health handlers answer while an
// update holds the agent (a long kernel transaction), turn 503 once it has
// waited longer than the health timeout, and 200 again once it commits.
func TestHealthWhileUpdateHoldsAgent(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	k := &heldKernel{hold: make(chan struct{}), release: make(chan struct{})}
	run := startAgentWith(t, ns, "", func(c *Config) {
		c.ControlPlanes = []string{lis.Addr().String()}
		c.HealthTimeout = 500 * time.Millisecond
		c.wrapKernel = func(inner agent.Kernel) agent.Kernel { k.Kernel = inner; return k }
	})
	receive(t, cp.hellos, "hello")
	if got := run.get(t, "/livez"); got != http.StatusOK {
		t.Errorf("/livez before any view = %d, want 200", got)
	}
	if got := run.get(t, "/healthz"); got != http.StatusServiceUnavailable {
		t.Errorf("/healthz before any view = %d, want 503", got)
	}
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1", r)
	}
	run.waitHealth(t, http.StatusOK)

	changed := changedView(t, "10.244.3.2", 0)
	cp.updates <- &doormanv1.SyncResponse{Version: 2, Upserts: changed[:1], ViewDigest: digestOf(changed)}
	receive(t, k.hold, "apply held")
	start := time.Now()
	if got := run.get(t, "/healthz"); got != http.StatusOK && time.Since(start) < 500*time.Millisecond {
		t.Errorf("/healthz with an update in time = %d, want 200", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for run.get(t, "/healthz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/healthz still 200 with an update held for 10s, past the 500ms timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := run.get(t, "/livez"); got != http.StatusServiceUnavailable {
		t.Errorf("/livez with an update held past the timeout = %d, want 503", got)
	}
	close(k.release)
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 2 {
		t.Fatalf("reply %v, want an ack of version 2", r)
	}
	run.waitHealth(t, http.StatusOK)
	if got := run.get(t, "/livez"); got != http.StatusOK {
		t.Errorf("/livez after the commit = %d, want 200", got)
	}
}
