//go:build e2e

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/retry"
)

const (
	sigSTOP = syscall.SIGSTOP
	sigCONT = syscall.SIGCONT
)

// Row 5: someone edits an element of doorman's table or deletes the whole
// table; the agent repairs it within a bounded time, logs and counts it.
func TestDrift(t *testing.T) {
	const node = "node3"
	cp := c.ControlPlaneGRPC()
	waitConverged(t, node, cp, 30*time.Second)
	ctx := context.Background()

	t.Run("element", func(t *testing.T) {
		ls := loads{fromPod(t, node, addr(webIP, webPort)), fromExternal(t, node)}
		// The ClusterIP element of a bulk Service (no traffic goes there).
		svc, err := c.Client().CoreV1().Services(ns).Get(ctx, bulkName(70), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.MustParseAddr(svc.Spec.ClusterIP).As4()
		snap0 := snapshot(t, node)
		repairs0 := mustAgentState(t, node).GetDriftRepairs()
		agentLog := markLog(c.AgentLog(node))
		n, err := c.DeleteDoormanElement(node, "service-ips", ip[:])
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("no element of %s in service-ips", svc.Spec.ClusterIP)
		}
		start := time.Now()
		eventually(t, 10*time.Second, "element repaired", func() error {
			// Only elements count: the resync may also retire per-K
			// chains no Service uses any more.
			if d := elementDiff(snap0.Diff(snapshot(t, node))); len(d) > 0 {
				return fmt.Errorf("%d differences: %s", len(d), strings.Join(d, "; "))
			}
			return nil
		})
		took := time.Since(start)
		t.Logf("deleted %d element(s) of %s; repaired in %s", n, svc.Spec.ClusterIP, took.Round(time.Millisecond))
		eventually(t, 5*time.Second, "repair counted", func() error {
			st, err := agentState(ctx, node, false)
			if err != nil {
				return err
			}
			if st.GetDriftRepairs() <= repairs0 {
				return fmt.Errorf("drift_repairs %d", st.GetDriftRepairs())
			}
			return nil
		})
		if !strings.Contains(agentLog.since(), "kernel drift repaired") {
			t.Errorf("no \"kernel drift repaired\" log line")
		}
		t.Logf("drift_repairs %d → %d, metric doorman_agent_drift_repairs_total=%.0f", repairs0, mustAgentState(t, node).GetDriftRepairs(), metric(t, node, "doorman_agent_drift_repairs_total"))
		ls.finish(t, 0)
	})

	t.Run("table", func(t *testing.T) {
		ls := loads{fromPod(t, "node1", addr(webIP, webPort)), fromExternal(t, node)}
		time.Sleep(500 * time.Millisecond)
		snap0 := snapshot(t, node)
		repairs0 := mustAgentState(t, node).GetDriftRepairs()
		if err := c.DeleteDoormanTable(node); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var took time.Duration
		eventually(t, 10*time.Second, "table repaired", func() error {
			s, err := c.ReadDoormanTable(node)
			if err != nil {
				return err
			}
			if !s.Exists {
				return errors.New("no table")
			}
			took = time.Since(start)
			// Handles differ (a new table); the content must not.
			if d := elementDiff(snap0.Diff(s)); len(d) > 0 {
				return fmt.Errorf("%d element differences", len(d))
			}
			return nil
		})
		t.Logf("table deleted; back in %s", took.Round(time.Millisecond))
		eventually(t, 5*time.Second, "repair counted", func() error {
			st, err := agentState(ctx, node, false)
			if err != nil {
				return err
			}
			if st.GetDriftRepairs() <= repairs0 {
				return fmt.Errorf("drift_repairs %d", st.GetDriftRepairs())
			}
			return nil
		})
		if took > 2*time.Second {
			t.Errorf("table repaired only after %s", took)
		}
		// New connections through the node fail between the deletion
		// and the repair (no DNAT): one every 25 ms, plus one.
		ls.finish(t, int64(took/(25*time.Millisecond))+1)
	})
}

func elementDiff(d []string) []string {
	var out []string
	for _, l := range d {
		if strings.Contains(l, "element of ") {
			out = append(out, l)
		}
	}
	return out
}

// Row 6: an update the kernel rejects. A LoadBalancer Service with
// overlapping loadBalancerSourceRanges gives the firewall-allow interval
// set overlapping ranges, which the kernel refuses (the API server
// accepts them). The agent keeps its last good rules, NACKs, reports it
// in Inspect, its metric and its log, is not sent the same update again,
// and the next good update (the ranges fixed) applies.
func TestNack(t *testing.T) {
	ctx := context.Background()
	cp := c.ControlPlaneGRPC()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	ls := loads{fromPod(t, "node1", addr(canaryIP, webPort)), fromExternal(t, "node2")}
	cs := c.Client()
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nack-lb", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			Selector:                 map[string]string{"app": "web"},
			Ports:                    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
			LoadBalancerSourceRanges: []string{"10.0.0.0/8", "10.250.0.0/16"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.CoreV1().Services(ns).Delete(context.Background(), svc.Name, metav1.DeleteOptions{}) }()
	for _, n := range c.Nodes() {
		eventually(t, 30*time.Second, n.Name+" holding "+svc.Name, func() error {
			_, err := agentEntryDigest(ctx, n.Name, ns+"/"+svc.Name+":")
			return err
		})
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	type nodeBefore struct {
		gen uint32
		st  uint64 // NACKs so far
	}
	before := map[string]nodeBefore{}
	for _, n := range c.Nodes() {
		st := mustAgentState(t, n.Name)
		before[n.Name] = nodeBefore{gen: gen(t, n.Name), st: st.GetNacks()}
	}
	cpLog := markLog(c.ControlPlaneLog())
	agentLog := markLog(c.AgentLog("node1"))

	// The load balancer's address brings the firewall elements.
	const lbIP = "10.251.200.1"
	if err := c.SetLoadBalancerIngress(ctx, ns, svc.Name, corev1.LoadBalancerIPModeVIP, lbIP); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		eventually(t, 30*time.Second, "NACK from "+n.Name, func() error {
			st, err := agentState(ctx, n.Name, false)
			if err != nil {
				return err
			}
			if st.GetNacks() == before[n.Name].st {
				return fmt.Errorf("nacks %d, last_error %q", st.GetNacks(), st.GetLastError())
			}
			return nil
		})
	}
	// Not resent in a loop: the counts stay put.
	time.Sleep(5 * time.Second)
	for _, n := range c.Nodes() {
		st := mustAgentState(t, n.Name)
		nacks := st.GetNacks() - before[n.Name].st
		t.Logf("%s: nacks +%d, last_nack_version %d, last_error %q", n.Name, nacks, st.GetLastNackVersion(), st.GetLastError())
		if nacks != 1 {
			t.Errorf("%s: %d NACKs for one bad update, want 1", n.Name, nacks)
		}
		if g := gen(t, n.Name); g != before[n.Name].gen {
			t.Errorf("%s: nftables generation %d → %d: the rejected update changed the kernel", n.Name, before[n.Name].gen, g)
		}
		m := metric(t, n.Name, "doorman_agent_nacks_total")
		if m < 1 {
			t.Errorf("%s: doorman_agent_nacks_total %.0f", n.Name, m)
		}
		status, err := cpNode(ctx, cp, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if status.GetLastNack() == "" || status.GetLastNackVersion() == 0 {
			t.Errorf("%s: control plane's Inspect shows no NACK: %+v", n.Name, status)
		} else {
			t.Logf("%s: control plane Inspect last_nack_version=%d last_nack=%q", n.Name, status.GetLastNackVersion(), status.GetLastNack())
		}
	}
	text := cpLog.since()
	for _, n := range c.Nodes() {
		if got := strings.Count(text, "update rejected: node="+n.Name+" "); got != 1 {
			t.Errorf("control plane logged %d rejections from %s, want 1", got, n.Name)
		}
		if u := sentUpdates(text, n.Name); len(u) != 1 {
			t.Errorf("%d updates sent to %s, want 1 (no resend): %+v", len(u), n.Name, u)
		}
	}
	if !strings.Contains(agentLog.since(), "update rejected") {
		t.Errorf("no \"update rejected\" line in node1's agent log")
	}

	// A good change to another Service while the bad one is pending
	// applies: one Service that cannot be programmed must not hold back
	// the others.
	const bulk = 80
	prefix := ns + "/" + bulkName(bulk) + ":"
	other := changeBulk(t, bulk, cp, "node1")
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range c.Nodes() {
		err := poll(ctx, max(time.Until(deadline), time.Second), func() error {
			d, err := agentEntryDigest(ctx, n.Name, prefix)
			if err != nil {
				return err
			}
			if d != other {
				return fmt.Errorf("digest %x, want %x", d, other)
			}
			return nil
		})
		if err != nil {
			st := mustAgentState(t, n.Name)
			t.Errorf("%s: a change to %s is not applied while %s is rejected (%v); NACKs +%d, last_error %q",
				n.Name, bulkName(bulk), svc.Name, err, st.GetNacks()-before[n.Name].st, st.GetLastError())
		}
	}

	// The next good update of the bad Service applies.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cs.CoreV1().Services(ns).Get(ctx, svc.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.LoadBalancerSourceRanges = []string{"10.250.0.0/16"}
		_, err = cs.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, 30*time.Second)
		waitAgentEntry(t, n.Name, prefix, other, 10*time.Second)
		st := mustAgentState(t, n.Name)
		t.Logf("%s: converged after the fix; NACKs in all +%d", n.Name, st.GetNacks()-before[n.Name].st)
	}
	// The load balancer answers from the external client through node2.
	if err := c.RouteFromExternal(lbIP+"/32", "node2"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "load balancer answers once the good update applied", func() error {
		_, err := ask(ctx, c.DialFromExternal(), addr(lbIP, 80))
		return err
	})
	ls.finish(t, 0)
}
