//go:build e2e

package faults

import (
	"context"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// Row 1: an agent restart (SIGTERM, SIGKILL) does not touch the kernel,
// keeps established connections, is ready from its cache in under a
// second and receives only what changed while it was down.
func TestAgentRestart(t *testing.T) {
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			const node = "node1"
			cp := c.ControlPlaneGRPC()
			ls := loads{
				fromPod(t, node, addr(webIP, webPort)),
				fromExternal(t, node),
			}
			// An established connection through the node's DNAT, held
			// across the restart.
			dial, err := c.DialFromPod(ns, "web-"+node)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			sess, err := openSession(ctx, dial, addr(webIP, webPort))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sess.Close() }()
			before, err := sess.ask(ctx)
			if err != nil {
				t.Fatal(err)
			}
			waitConverged(t, node, cp, 30*time.Second)
			gen0, snap0 := gen(t, node), snapshot(t, node)
			full := viewBytes(t, cp, node)
			agentLog, cpLog := cluster.MarkLog(c.AgentLog(node)), cluster.MarkLog(c.ControlPlaneLog())

			if sig == syscall.SIGTERM {
				c.StopAgent(node)
			} else if err := c.KillAgent(node); err != nil {
				t.Fatal(err)
			}
			// Changed while the agent is down: one key, one bucket.
			bulk := 10 + i
			prefix := ns + "/" + bulkName(bulk) + ":"
			want := changeBulk(t, bulk, cp, node)
			time.Sleep(time.Second) // traffic keeps flowing with no agent
			if g := gen(t, node); g != gen0 {
				t.Errorf("nftables generation moved from %d to %d while the agent was down", gen0, g)
			}

			start := time.Now()
			if err := c.StartAgent(node); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ready, err := c.WaitAgentHealthy(wctx, node)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			// Healthy from the cache (the "cached view programmed" line
			// below): how soon is the benchmarks' restart figure.
			t.Logf("ready (/healthz 200) %s after start", ready.Round(time.Millisecond))
			waitAgentEntry(t, node, prefix, want, 30*time.Second)
			waitConverged(t, node, cp, 30*time.Second)
			t.Logf("converged %s after start", time.Since(start).Round(time.Millisecond))

			// The start-up Sync from the cache made no kernel change.
			logText := agentLog.Since()
			m := regexp.MustCompile(`cached view programmed: .*ops=(\d+)`).FindStringSubmatch(logText)
			switch {
			case m == nil:
				t.Errorf("no \"cached view programmed\" line in the agent's log")
			case m[1] != "0":
				t.Errorf("start-up sync from the cache made %s kernel ops, want 0", m[1])
			default:
				t.Logf("start-up sync from the cache: ops=0")
			}
			// Exactly one transaction since: the one carrying the change.
			gen1, snap1 := gen(t, node), snapshot(t, node)
			if gen1-gen0 != 1 {
				t.Errorf("nftables generation moved by %d across the restart, want 1 (the change made meanwhile)", gen1-gen0)
			}
			diff := snap0.Diff(snap1)
			if od := objectDiff(diff); len(od) > 0 {
				t.Errorf("chains, rules or sets rewritten across the restart:\n%s", strings.Join(od, "\n"))
			}
			t.Logf("kernel: generation %d → %d, %d element lines changed (the changed Service)", gen0, gen1, len(diff))
			// Two endpoints replaced: their service-endpoints and
			// hairpin-pairs elements, each deleted and added.
			if len(diff) > 8 {
				t.Errorf("%d element lines changed, want at most 8 (two endpoints of one Service):\n%s", len(diff), strings.Join(diff, "\n"))
			}

			// Only what changed was sent.
			sent := sentUpdates(cpLog.Since(), node)
			if len(sent) == 0 {
				t.Fatalf("no update sent to %s after the restart", node)
			}
			r := sent[0]
			t.Logf("resume update: full=%t replaced_buckets=%d upserts=%d removals=%d (%d updates in all)", r.full, r.replacedBuckets, r.upserts, r.removals, len(sent))
			if r.full || r.replacedBuckets != 1 {
				t.Errorf("resume update full=%t replaced_buckets=%d, want one bucket", r.full, r.replacedBuckets)
			}
			bytes := metric(t, node, "doorman_agent_stream_bytes_received_total")
			t.Logf("bytes received since the restart: %.0f; the whole view encodes to %d", bytes, full)
			if bytes >= float64(full)/4 {
				t.Errorf("received %.0f bytes after the restart, a full view is %d: not a resume", bytes, full)
			}

			time.Sleep(time.Second)
			after, err := sess.ask(ctx)
			if err != nil {
				t.Errorf("established connection broken by the restart: %v", err)
			} else if after != before {
				t.Errorf("established connection answered by %s, then by %s", before, after)
			}
			ls.finish(t, 0)
		})
	}
}

// Row 2: a node reboots while the control plane is down: the table is
// gone, the cache is there; the agent programs from its cache before any
// control plane answers, and converges once one does.
func TestNodeRebootWhileControlPlaneDown(t *testing.T) {
	const node = "node2"
	cp := c.ControlPlaneGRPC()
	waitConverged(t, node, cp, 30*time.Second)
	others := loads{fromPod(t, "node1", addr(webIP, webPort)), fromExternal(t, "node3")}

	if err := c.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if !c.ControlPlaneRunning() {
			_ = c.StartControlPlane(context.Background())
		}
	}()
	if err := c.KillAgent(node); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDoormanTable(node); err != nil {
		t.Fatal(err)
	}
	if s, err := c.ReadDoormanTable(node); err != nil || s.Exists {
		t.Fatalf("table still there after the reboot (err %v)", err)
	}
	// Changed while the node is down and the control plane too.
	const bulk = 20
	prefix := ns + "/" + bulkName(bulk) + ":"
	changeBulk(t, bulk, "", node)

	if err := c.StartAgent(node); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ready, err := c.WaitAgentHealthy(wctx, node)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	st := mustAgentState(t, node)
	t.Logf("ready %s after start, from %q, connected=%t, version %d, %d service ports", ready.Round(time.Millisecond), st.GetLoadedFrom(), st.GetConnected(), st.GetVersion(), st.GetServicePorts())
	if st.GetConnected() {
		t.Errorf("agent connected while the control plane is down")
	}
	if !st.GetKernelReady() || st.GetServicePorts() < bulkServices {
		t.Errorf("kernel not programmed from the cache: ready=%t service_ports=%d", st.GetKernelReady(), st.GetServicePorts())
	}
	// Traffic through the rebooted node works before any control plane.
	ls := loads{fromPod(t, node, addr(webIP, webPort)), fromExternal(t, node)}
	time.Sleep(2 * time.Second)
	if ls[0].attempted.Load() == 0 || ls[0].failed.Load() > 0 || ls[1].failed.Load() > 0 {
		t.Errorf("traffic through the rebooted node before the control plane is back: %d/%d and %d/%d failed",
			ls[0].failed.Load(), ls[0].attempted.Load(), ls[1].failed.Load(), ls[1].attempted.Load())
	}

	start := time.Now()
	if err := c.StartControlPlane(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, err := cpEntryDigest(context.Background(), cp, node, prefix)
	if err != nil {
		t.Fatal(err)
	}
	waitAgentEntry(t, node, prefix, want, time.Minute)
	waitConverged(t, node, cp, time.Minute)
	t.Logf("converged %s after the control plane started", time.Since(start).Round(time.Millisecond))
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, time.Minute)
	}
	append(others, ls...).finish(t, 0)
}

// Row 8: a corrupt cache (garbage, truncated) is set aside with a clear
// log line, the agent takes a full view from the control plane and does
// not crash-loop.
func TestCorruptCache(t *testing.T) {
	const node = "node2"
	cp := c.ControlPlaneGRPC()
	for _, tc := range []struct {
		name    string
		corrupt func(path string) error
	}{
		{"garbage", func(path string) error {
			b := make([]byte, 64*1024)
			for i := range b {
				b[i] = byte(i*7 + 3)
			}
			return os.WriteFile(path, b, 0o600)
		}},
		{"truncated", func(path string) error {
			st, err := os.Stat(path)
			if err != nil {
				return err
			}
			return os.Truncate(path, st.Size()/3)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			waitConverged(t, node, cp, 30*time.Second)
			ls := loads{fromPod(t, node, addr(webIP, webPort)), fromExternal(t, node)}
			gen0 := gen(t, node)
			c.StopAgent(node)
			path := c.AgentCachePath(node)
			if err := tc.corrupt(path); err != nil {
				t.Fatal(err)
			}
			agentLog, cpLog := cluster.MarkLog(c.AgentLog(node)), cluster.MarkLog(c.ControlPlaneLog())
			if err := c.StartAgent(node); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			waitConverged(t, node, cp, time.Minute)
			t.Logf("converged %s after start", time.Since(start).Round(time.Millisecond))

			text := agentLog.Since()
			line := ""
			for _, l := range strings.Split(text, "\n") {
				if strings.Contains(l, "cache unreadable") {
					line = l
				}
			}
			if line == "" {
				t.Errorf("no log line about the unreadable cache; agent log:\n%s", tail(text, 1500))
			} else {
				t.Logf("agent: %s", line)
				if m := regexp.MustCompile(`aside=(\S+)`).FindStringSubmatch(line); m == nil {
					t.Errorf("the log line does not say where the cache was set aside")
				} else if _, err := os.Stat(m[1]); err != nil {
					t.Errorf("cache set aside at %s: %v", m[1], err)
				}
			}
			sent := sentUpdates(cpLog.Since(), node)
			if len(sent) == 0 || !sent[0].full {
				t.Errorf("first update after the corrupt cache is not a full view: %+v", sent)
			}
			st := mustAgentState(t, node)
			t.Logf("agent: loaded_from=%q full_syncs=%d version=%d", st.GetLoadedFrom(), st.GetFullSyncs(), st.GetVersion())
			if st.GetFullSyncs() < 1 {
				t.Errorf("no full sync after the corrupt cache")
			}
			// The table was right: the full sync compared and changed
			// nothing.
			if g := gen(t, node); g != gen0 {
				t.Logf("nftables generation %d → %d (the full sync rewrote something)", gen0, g)
			}
			// No crash loop: the same process keeps running.
			time.Sleep(2 * time.Second)
			if ok, err := c.AgentRunning(node); !ok {
				t.Errorf("agent exited: %v", err)
			}
			if n := strings.Count(agentLog.Since(), "cache unreadable"); n != 1 {
				t.Errorf("%d \"cache unreadable\" lines, want 1", n)
			}
			ls.finish(t, 0)
		})
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
