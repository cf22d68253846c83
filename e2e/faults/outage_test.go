//go:build e2e

package faults

import (
	"context"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// Row 4: the API server stops for a while: the dataplane keeps serving,
// the control plane's watches resume without re-sending views, and a
// change made once it is back converges.
func TestAPIServerOutage(t *testing.T) {
	ctx := context.Background()
	cp := c.ControlPlaneGRPC()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	ls := loads{
		fromPod(t, "node1", addr(webIP, webPort)),
		fromPod(t, "node3", addr(canaryIP, webPort)),
		fromExternal(t, "node2"),
	}
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// Marked once it is down: its graceful shutdown removes its own
	// endpoint from default/kubernetes, a real change.
	before := figures(t, cp)
	cpLog := cluster.MarkLog(c.ControlPlaneLog())
	const outage = 40 * time.Second
	time.Sleep(outage)
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	t.Logf("API server down for %s", time.Since(down).Round(time.Second))
	// Let the watches resume, then check nothing was re-sent or
	// re-programmed.
	time.Sleep(5 * time.Second)
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, time.Minute)
	}
	// The API server puts its endpoint back into default/kubernetes when
	// it starts: one key may change, nothing else may be sent.
	sent := sentUpdates(cpLog.Since(), "")
	perNode := map[string]uint32{}
	for _, u := range sent {
		t.Logf("sent after the outage: %+v", u)
		perNode[u.node]++
		if u.full || u.replacedBuckets > 0 || u.upserts > 1 || u.removals > 1 {
			t.Errorf("control plane re-sent more than one key after the API server came back: %+v", u)
		}
	}
	for _, n := range c.Nodes() {
		if perNode[n.Name] > 1 {
			t.Errorf("%d updates sent to %s after the outage, want at most 1", perNode[n.Name], n.Name)
		}
		b := before[n.Name]
		g := gen(t, n.Name)
		bytes := metric(t, n.Name, "doorman_agent_stream_bytes_received_total") - b.bytes
		t.Logf("%s: nftables generation %d → %d, %.0f bytes received (whole view %d)", n.Name, b.gen, g, bytes, b.full)
		if g-b.gen > perNode[n.Name] {
			t.Errorf("%s: %d kernel transactions for %d updates", n.Name, g-b.gen, perNode[n.Name])
		}
		if bytes >= float64(b.full)/4 {
			t.Errorf("%s: received %.0f bytes, the whole view is %d: re-sent in full", n.Name, bytes, b.full)
		}
	}
	if !c.ControlPlaneRunning() {
		t.Fatalf("control plane died during the API server outage")
	}

	// A change made once the API server is back converges everywhere.
	const bulk = 40
	prefix := ns + "/" + bulkName(bulk) + ":"
	old, err := cpEntryDigest(ctx, cp, "node1", prefix)
	if err != nil {
		t.Fatal(err)
	}
	made := time.Since(up)
	start := time.Now()
	if err := setBulkEndpoints(ctx, bulk, 1); err != nil {
		t.Fatal(err)
	}
	want := waitCPDigestChange(t, cp, "node1", prefix, old, 2*time.Minute, "control plane sees the change made after the outage")
	seen := time.Since(start)
	for _, n := range c.Nodes() {
		waitAgentEntry(t, n.Name, prefix, want, 30*time.Second)
	}
	t.Logf("change made %s after the API server was ready: seen by the control plane after %s, on every node after %s",
		made.Round(time.Second), seen.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	ls.finish(t, 0)
}
