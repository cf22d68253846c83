//go:build e2e

package faults

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// nodeFigures is what a node's agent and kernel show at one moment.
type nodeFigures struct {
	gen   uint32
	bytes float64
	full  int // bytes of the whole view at the control plane
}

func figures(t *testing.T, grpcAddr string) map[string]nodeFigures {
	t.Helper()
	out := map[string]nodeFigures{}
	for _, n := range c.Nodes() {
		out[n.Name] = nodeFigures{
			gen:   gen(t, n.Name),
			bytes: metric(t, n.Name, "doorman_agent_stream_bytes_received_total"),
			full:  viewBytes(t, grpcAddr, n.Name),
		}
	}
	return out
}

// checkResumed: on every node the kernel generation moved by exactly
// wantGen and the agent received far less than a full view.
func checkResumed(t *testing.T, before map[string]nodeFigures, wantGen uint32) {
	t.Helper()
	for _, n := range c.Nodes() {
		b := before[n.Name]
		g := gen(t, n.Name)
		bytes := metric(t, n.Name, "doorman_agent_stream_bytes_received_total") - b.bytes
		t.Logf("%s: nftables generation %d → %d, %.0f bytes received (whole view %d)", n.Name, b.gen, g, bytes, b.full)
		if g-b.gen != wantGen {
			t.Errorf("%s: %d kernel transactions, want %d", n.Name, g-b.gen, wantGen)
		}
		if bytes >= float64(b.full)/4 {
			t.Errorf("%s: received %.0f bytes, the whole view is %d: re-sent in full", n.Name, bytes, b.full)
		}
	}
}

// Row 3: with two control-plane replicas, agents switch when one stops,
// resume from what they hold (no full re-send, no kernel change when
// nothing changed), and changes made during the outage arrive.
func TestControlPlaneFailover(t *testing.T) {
	ctx := context.Background()
	first := c.ControlPlaneGRPC()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, first, 30*time.Second)
	}
	second, err := c.StartControlPlaneReplica(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	defer func() {
		if !c.ControlPlaneRunning() {
			_ = c.StartControlPlane(context.Background())
		}
	}()
	ls := loads{
		fromPod(t, "node1", addr(webIP, webPort)),
		fromPod(t, "node2", addr(canaryIP, webPort)),
		fromExternal(t, "node3"),
	}

	// 1. Replica 1 stops: agents move to replica 2 with nothing changed.
	before := figures(t, first)
	secondLog := cluster.MarkLog(second.Log)
	start := time.Now()
	if err := c.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, second.GRPC, time.Minute)
		st := mustAgentState(t, n.Name)
		if st.GetControlPlane() != second.NodeAddr {
			t.Errorf("%s connected to %q, want replica 2 %s", n.Name, st.GetControlPlane(), second.NodeAddr)
		}
	}
	t.Logf("every agent on replica 2 %s after replica 1 stopped", time.Since(start).Round(time.Millisecond))
	checkResumed(t, before, 0)
	for _, u := range sentUpdates(secondLog.Since(), "") {
		if u.full || u.upserts > 0 || u.removals > 0 {
			t.Errorf("replica 2 sent %s more than an empty resume: %+v", u.node, u)
		}
	}

	// 2. A change made while replica 1 is down arrives through replica 2.
	const bulk = 30
	prefix := ns + "/" + bulkName(bulk) + ":"
	before = figures(t, second.GRPC)
	want := changeBulk(t, bulk, second.GRPC, "node1")
	for _, n := range c.Nodes() {
		waitAgentEntry(t, n.Name, prefix, want, 30*time.Second)
		waitConverged(t, n.Name, second.GRPC, 30*time.Second)
	}
	checkResumed(t, before, 1)

	// 3. Replica 1 restarts, replica 2 stops: back to replica 1, again
	// without a full re-send or a kernel change.
	if err := c.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	before = figures(t, second.GRPC)
	firstLog := cluster.MarkLog(c.ControlPlaneLog())
	start = time.Now()
	second.Stop()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, first, time.Minute)
		if st := mustAgentState(t, n.Name); st.GetControlPlane() != cluster.GatewayIP+":9400" {
			t.Errorf("%s connected to %q, want replica 1", n.Name, st.GetControlPlane())
		}
	}
	t.Logf("every agent back on replica 1 %s after replica 2 stopped", time.Since(start).Round(time.Millisecond))
	checkResumed(t, before, 0)
	for _, u := range sentUpdates(firstLog.Since(), "") {
		if u.full || u.upserts > 0 || u.removals > 0 {
			t.Errorf("restarted replica 1 sent %s more than an empty resume: %+v", u.node, u)
		}
	}
	ls.finish(t, 0)
}

// Row 7: a stuck agent (SIGSTOP) does not slow the others; once resumed it
// catches up with one coalesced update.
func TestStuckAgent(t *testing.T) {
	const stuck = "node3"
	cp := c.ControlPlaneGRPC()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	ls := loads{fromPod(t, "node1", addr(webIP, webPort)), fromExternal(t, stuck)}
	others := []string{"node1", "node2"}

	converge := func(bulk int) time.Duration {
		prefix := ns + "/" + bulkName(bulk) + ":"
		start := time.Now()
		want := changeBulk(t, bulk, cp, "node1")
		for _, n := range others {
			waitAgentEntry(t, n, prefix, want, 30*time.Second)
		}
		return time.Since(start)
	}
	var runs []time.Duration
	for i := range 3 {
		runs = append(runs, converge(50+i))
	}
	slices.Sort(runs)
	base := runs[1]
	t.Logf("convergence on %v with every agent running: %v, median %s", others, runs, base.Round(time.Millisecond))

	cpLog := cluster.MarkLog(c.ControlPlaneLog())
	if err := c.SignalAgent(stuck, sigSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = c.SignalAgent(stuck, sigCONT)
		}
	}()
	time.Sleep(2 * time.Second) // traffic through the frozen agent's node
	var slow time.Duration
	for i := range 5 {
		slow = max(slow, converge(60+i))
	}
	t.Logf("convergence on %v with %s stopped: %s (slowest of 5)", others, stuck, slow.Round(time.Millisecond))
	if slow > 3*base+2*time.Second {
		t.Errorf("a stuck agent slowed the others: %s, %s before", slow, base)
	}
	ns3, err := cpNode(context.Background(), cp, stuck)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane about %s while stopped: desired=%d acked=%d in_flight=%d lag=%d", stuck, ns3.GetDesiredVersion(), ns3.GetAckedVersion(), ns3.GetInFlightVersion(), ns3.GetLag())

	if err := c.SignalAgent(stuck, sigCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	start := time.Now()
	waitConverged(t, stuck, cp, time.Minute)
	t.Logf("%s caught up %s after SIGCONT", stuck, time.Since(start).Round(time.Millisecond))
	sent := sentUpdates(cpLog.Since(), stuck)
	for _, u := range sent {
		t.Logf("sent to %s: %+v", stuck, u)
	}
	// At most one update was in flight when it stopped; everything after
	// it is one coalesced update.
	if len(sent) > 2 {
		t.Errorf("%d updates sent to the stuck agent for 5 changes, want at most 2 (one in flight, one coalesced)", len(sent))
	}
	if strings.Contains(cpLog.Since(), "node disconnected: node="+stuck) {
		t.Logf("the stuck agent's stream was closed meanwhile (keepalive)")
	}
	ls.finish(t, 0)
}
