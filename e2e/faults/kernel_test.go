//go:build e2e

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sretry "k8s.io/client-go/util/retry"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/retry"
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
		agentLog := cluster.MarkLog(c.AgentLog(node))
		n, err := c.DeleteDoormanElement(node, "service-ips", ip[:])
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("no element of %s in service-ips", svc.Spec.ClusterIP)
		}
		start := time.Now()
		retry.Eventually(t, 10*time.Second, "element repaired", func() error {
			// Only elements count: the resync may also retire per-K
			// chains no Service uses any more.
			if d := elementDiff(snap0.Diff(snapshot(t, node))); len(d) > 0 {
				return fmt.Errorf("%d differences: %s", len(d), strings.Join(d, "; "))
			}
			return nil
		})
		took := time.Since(start)
		t.Logf("deleted %d element(s) of %s; repaired in %s", n, svc.Spec.ClusterIP, took.Round(time.Millisecond))
		waitRepairCounted(ctx, t, node, repairs0)
		if !repairedOnEvent.MatchString(agentLog.Since()) {
			t.Errorf("no \"kernel drift repaired\" log line for a foreign change")
		}
		t.Logf("drift_repairs %d → %d, metric doorman_agent_drift_repairs_total=%.0f", repairs0, mustAgentState(t, node).GetDriftRepairs(), metric(t, node, "doorman_agent_drift_repairs_total"))
		ls.finish(t, 0)
	})

	t.Run("table", func(t *testing.T) {
		ls := loads{fromPod(t, "node1", addr(webIP, webPort)), fromExternal(t, node)}
		time.Sleep(500 * time.Millisecond)
		snap0 := snapshot(t, node)
		repairs0 := mustAgentState(t, node).GetDriftRepairs()
		agentLog := cluster.MarkLog(c.AgentLog(node))
		if err := c.DeleteDoormanTable(node); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var took time.Duration
		retry.Eventually(t, 10*time.Second, "table repaired", func() error {
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
		waitRepairCounted(ctx, t, node, repairs0)
		// At once means on the event monitor's word: the periodic resync
		// is minutes away.
		if !repairedOnEvent.MatchString(agentLog.Since()) {
			t.Errorf("the table was not repaired on a foreign change's event; agent log since the deletion:\n%s", agentLog.Since())
		}
		// New connections through the node fail between the deletion
		// and the repair (no DNAT): one every 25 ms, plus one.
		ls.finish(t, int64(took/(25*time.Millisecond))+1)
	})
}

// repairedOnEvent matches the agent's log of a repair the event monitor
// asked for.
var repairedOnEvent = regexp.MustCompile(`kernel drift repaired: .*trigger="foreign change"`)

// waitRepairCounted waits until the node's agent counts more drift repairs
// than before.
func waitRepairCounted(ctx context.Context, t *testing.T, node string, before uint64) {
	t.Helper()
	retry.Eventually(t, 5*time.Second, "repair counted", func() error {
		st, err := agentState(ctx, node, false)
		if err != nil {
			return err
		}
		if st.GetDriftRepairs() <= before {
			return fmt.Errorf("drift_repairs %d", st.GetDriftRepairs())
		}
		return nil
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

// Row 6: an update the kernel rejects. Someone re-creates doorman's
// firewall-ips set with a size equal to the elements it holds, so the
// kernel refuses (ENFILE) any Service that brings one more: a
// LoadBalancer Service with source ranges getting its address. The agent
// keeps its last good rules, NACKs naming the Service, reports it in
// Inspect, its metrics and its log, and is not sent the same update again;
// a good change to another Service applies (acked, the refused Service
// listed as not programmed), and the next good value of the refused
// Service (no source ranges) applies too.
func TestNack(t *testing.T) {
	ctx := context.Background()
	cp := c.ControlPlaneGRPC()
	nodes := c.Nodes()
	for _, n := range nodes {
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	ls := loads{fromPod(t, "node1", addr(canaryIP, webPort)), fromExternal(t, "node2")}

	// A LoadBalancer Service with source ranges: firewall-ips holds its
	// address on every node.
	const (
		lbIP1  = "10.251.200.1"
		lbIP2  = "10.251.200.2"
		fwSet  = "firewall-ips"
		lbName = "nack-lb2"
	)
	createNackLB(t, "nack-lb1", "10.0.0.0/8")
	if err := c.SetLoadBalancerIngress(ctx, ns, "nack-lb1", corev1.LoadBalancerIPModeVIP, lbIP1); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		retry.Eventually(t, 30*time.Second, n.Name+": firewall-ips holds nack-lb1", func() error {
			_, els, err := c.DoormanSetSize(n.Name, fwSet)
			if err != nil {
				return err
			}
			if els == 0 {
				return errors.New("no element")
			}
			return nil
		})
		waitConverged(t, n.Name, cp, 30*time.Second)
	}

	// Cap firewall-ips at its size on every node; the agents put back the
	// rules that use it, and the set keeps its size.
	for _, n := range nodes {
		capSet(t, n.Name, fwSet)
	}
	for _, n := range nodes {
		waitConverged(t, n.Name, cp, 30*time.Second)
	}

	// (a) An update that brings only one more firewall-ips element: the
	// second LB Service's address. First the Service without an address
	// (no firewall element yet), with its endpoints.
	createNackLB(t, lbName, "10.0.0.0/8")
	key := ns + "/" + lbName + ":http/tcp/ipv4"
	for _, n := range nodes {
		retry.Eventually(t, 30*time.Second, n.Name+": "+key+" with endpoints in the control plane's view", func() error {
			v, err := cpView(ctx, cp, n.Name)
			if err != nil {
				return err
			}
			for _, e := range v.GetEntries() {
				if e.GetKey() == key {
					if len(e.GetServicePort().GetEndpoints()) == 0 {
						return errors.New("no endpoints")
					}
					return nil
				}
			}
			return errors.New("no entry")
		})
		waitConverged(t, n.Name, cp, 30*time.Second)
	}
	type nodeBefore struct {
		gen        uint32
		snap       *cluster.TableSnapshot
		nacks      uint64
		nackMetric float64
		rejMetric  float64
		log        cluster.LogMark
	}
	before := map[string]nodeBefore{}
	for _, n := range nodes {
		before[n.Name] = nodeBefore{
			gen:        gen(t, n.Name),
			snap:       snapshot(t, n.Name),
			nacks:      mustAgentState(t, n.Name).GetNacks(),
			nackMetric: metric(t, n.Name, "doorman_agent_nacks_total"),
			rejMetric:  metric(t, n.Name, "doorman_agent_kernel_rejections_total"),
			log:        cluster.MarkLog(c.AgentLog(n.Name)),
		}
	}
	cpLog := cluster.MarkLog(c.ControlPlaneLog())
	if err := c.SetLoadBalancerIngress(ctx, ns, lbName, corev1.LoadBalancerIPModeVIP, lbIP2); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		retry.Eventually(t, 30*time.Second, "NACK from "+n.Name, func() error {
			st, err := agentState(ctx, n.Name, false)
			if err != nil {
				return err
			}
			if st.GetNacks() == before[n.Name].nacks {
				return fmt.Errorf("nacks %d, last_error %q", st.GetNacks(), st.GetLastError())
			}
			return nil
		})
	}
	// Not resent in a loop: the counts stay put.
	time.Sleep(5 * time.Second)
	text := cpLog.Since()
	for _, n := range nodes {
		b := before[n.Name]
		st := mustAgentState(t, n.Name)
		nacks := st.GetNacks() - b.nacks
		t.Logf("%s: nacks +%d, last_nack_version %d, last_error %q", n.Name, nacks, st.GetLastNackVersion(), st.GetLastError())
		if nacks != 1 {
			t.Errorf("%s: %d NACKs for one refused update, want 1", n.Name, nacks)
		}
		if !strings.Contains(st.GetLastError(), key) {
			t.Errorf("%s: agent's last_error %q does not name %s", n.Name, st.GetLastError(), key)
		}
		if g := gen(t, n.Name); g != b.gen {
			t.Errorf("%s: nftables generation %d → %d: the refused update changed the kernel", n.Name, b.gen, g)
		}
		if d := b.snap.Diff(snapshot(t, n.Name)); len(d) > 0 {
			t.Errorf("%s: the refused update changed doorman's table: %s", n.Name, strings.Join(d, "; "))
		}
		if m := metric(t, n.Name, "doorman_agent_nacks_total"); m != b.nackMetric+1 {
			t.Errorf("%s: doorman_agent_nacks_total %.0f → %.0f, want +1", n.Name, b.nackMetric, m)
		}
		if m := metric(t, n.Name, "doorman_agent_kernel_rejections_total"); m != b.rejMetric+1 {
			t.Errorf("%s: doorman_agent_kernel_rejections_total %.0f → %.0f, want +1", n.Name, b.rejMetric, m)
		}
		status, err := cpNode(ctx, cp, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(status.GetLastNack(), key) || status.GetLastNackVersion() == 0 {
			t.Errorf("%s: control plane's Inspect shows no NACK naming %s: last_nack_version=%d last_nack=%q", n.Name, key, status.GetLastNackVersion(), status.GetLastNack())
		} else {
			t.Logf("%s: control plane Inspect last_nack_version=%d last_nack=%q", n.Name, status.GetLastNackVersion(), status.GetLastNack())
		}
		if got := strings.Count(text, "update rejected: node="+n.Name+" "); got != 1 {
			t.Errorf("control plane logged %d rejections from %s, want 1", got, n.Name)
		}
		if u := sentUpdates(text, n.Name); len(u) != 1 {
			t.Errorf("%d updates sent to %s, want 1 (no resend): %+v", len(u), n.Name, u)
		}
		if l := b.log.Since(); !strings.Contains(l, "update rejected") || !strings.Contains(l, lbName) {
			t.Errorf("%s: no \"update rejected\" line naming %s in the agent's log", n.Name, lbName)
		}
	}

	// (b) A change to another, ordinary Service applies while the refused
	// one is pending: acked, with the refused key not programmed.
	const bulk = 80
	prefix := ns + "/" + bulkName(bulk) + ":"
	other := changeBulk(t, bulk, cp, "node1")
	g, _ := bulkGen.Load(bulk)
	endpointIP := fmt.Sprintf("%x", []byte{10, byte(200 + g.(int)%55), bulk % 250, 1})
	for _, n := range nodes {
		waitAgentEntry(t, n.Name, prefix, other, 15*time.Second)
		waitConverged(t, n.Name, cp, 15*time.Second)
		snap := snapshot(t, n.Name)
		if !elementWith(snap, "service-endpoints", ":"+endpointIP) {
			t.Errorf("%s: %s's new endpoint (%s) not in service-endpoints", n.Name, bulkName(bulk), endpointIP)
		}
		if elementWith(snap, "service-ips", lbAddrHex(lbIP2)) {
			t.Errorf("%s: the refused %s's address is in service-ips", n.Name, lbName)
		}
		status, err := cpNode(ctx, cp, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if np := status.GetNotProgrammed(); len(np) != 1 || np[0] != key {
			t.Errorf("%s: control plane's not_programmed %q, want [%s]", n.Name, np, key)
		}
		st := mustAgentState(t, n.Name)
		if np := st.GetNotProgrammed(); len(np) != 1 || !strings.HasPrefix(np[0], key) {
			t.Errorf("%s: agent's not_programmed %q, want %s", n.Name, np, key)
		}
		if nacks := st.GetNacks() - before[n.Name].nacks; nacks != 1 {
			t.Errorf("%s: %d NACKs after the good change, want still 1", n.Name, nacks)
		}
		if m := metric(t, n.Name, "doorman_agent_not_programmed_entries"); m != 1 {
			t.Errorf("%s: doorman_agent_not_programmed_entries %.0f, want 1", n.Name, m)
		}
		t.Logf("%s: %s applied and acked; not programmed on the control plane: %q", n.Name, bulkName(bulk), status.GetNotProgrammed())
	}

	// (c) The refused Service without source ranges (no firewall-ips
	// element): it applies and nothing is left out.
	err := k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		s, err := c.Client().CoreV1().Services(ns).Get(ctx, lbName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.LoadBalancerSourceRanges = nil
		_, err = c.Client().CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		retry.Eventually(t, 30*time.Second, n.Name+" programs "+lbName, func() error {
			if err := converged(ctx, n.Name, cp); err != nil {
				return err
			}
			status, err := cpNode(ctx, cp, n.Name)
			if err != nil {
				return err
			}
			if np := status.GetNotProgrammed(); len(np) > 0 {
				return fmt.Errorf("control plane's not_programmed %q", np)
			}
			st, err := agentState(ctx, n.Name, false)
			if err != nil {
				return err
			}
			if np := st.GetNotProgrammed(); len(np) > 0 {
				return fmt.Errorf("agent's not_programmed %q", np)
			}
			return nil
		})
		if !elementWith(snapshot(t, n.Name), "service-ips", lbAddrHex(lbIP2)) {
			t.Errorf("%s: %s's address not in service-ips after its fix", n.Name, lbName)
		}
		if m := metric(t, n.Name, "doorman_agent_not_programmed_entries"); m != 0 {
			t.Errorf("%s: doorman_agent_not_programmed_entries %.0f, want 0", n.Name, m)
		}
		st := mustAgentState(t, n.Name)
		t.Logf("%s: converged after the fix; NACKs in all +%d", n.Name, st.GetNacks()-before[n.Name].nacks)
	}
	// The load balancer answers from the external client through node2.
	if err := c.RouteFromExternal(lbIP2+"/32", "node2"); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 20*time.Second, "load balancer answers once the good update applied", func() error {
		_, err := ask(ctx, c.DialFromExternal(), addr(lbIP2, 80))
		return err
	})
	ls.finish(t, 0)
}

// createNackLB creates a LoadBalancer Service in front of web with
// source ranges, deleted when the test ends.
func createNackLB(t *testing.T, name string, ranges ...string) {
	t.Helper()
	cs := c.Client()
	_, err := cs.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			Selector:                 map[string]string{"app": "web"},
			Ports:                    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
			LoadBalancerSourceRanges: ranges,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cs.CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete %s: %v", name, err)
		}
	})
}

// capSet caps one of doorman's sets on a node at its element count and
// waits until the agent has put back the rules that use it (a drift
// repair) with the set still capped. The cap is lifted at cleanup.
func capSet(t *testing.T, node, set string) {
	t.Helper()
	s0 := snapshot(t, node)
	repairs0 := mustAgentState(t, node).GetDriftRepairs()
	size, err := c.CapDoormanSet(node, set)
	if err != nil {
		t.Fatal(err)
	}
	// Lifted when the test ends, so that later tests are not affected.
	t.Cleanup(func() { uncapSet(t, node, set) })
	retry.Eventually(t, 10*time.Second, node+": rules using "+set+" put back", func() error {
		return setRepaired(node, set, s0, repairs0, size)
	})
	t.Logf("%s: %s capped at %d elements; the agent put back its rules", node, set, size)
}

// uncapSet lifts the cap (at cleanup, so it reports instead of stopping).
func uncapSet(t *testing.T, node, set string) {
	t.Helper()
	s0, err := c.ReadDoormanTable(node)
	if err != nil {
		t.Errorf("%s: %v", node, err)
		return
	}
	st, err := agentState(context.Background(), node, false)
	if err != nil {
		t.Errorf("%s: %v", node, err)
		return
	}
	if err := c.UncapDoormanSet(node, set); err != nil {
		t.Errorf("%s: uncap %s: %v", node, set, err)
		return
	}
	if err := retry.Until(context.Background(), 10*time.Second, func() error {
		return setRepaired(node, set, s0, st.GetDriftRepairs(), 0)
	}); err != nil {
		t.Errorf("%s: rules using %s not put back after lifting the cap: %v", node, set, err)
	}
}

// setRepaired: the agent counted a drift repair since repairs0, the table
// has as many objects as s0 (rules get new handles, the set a new id),
// and the set has the size.
func setRepaired(node, set string, s0 *cluster.TableSnapshot, repairs0 uint64, size uint32) error {
	st, err := agentState(context.Background(), node, false)
	if err != nil {
		return err
	}
	if st.GetDriftRepairs() <= repairs0 {
		return fmt.Errorf("drift_repairs %d", st.GetDriftRepairs())
	}
	s, err := c.ReadDoormanTable(node)
	if err != nil {
		return err
	}
	if len(s.Objects) != len(s0.Objects) {
		return fmt.Errorf("%d objects, want %d: %s", len(s.Objects), len(s0.Objects), strings.Join(objectDiff(s0.Diff(s)), "; "))
	}
	if d := elementDiff(s0.Diff(s)); len(d) > 0 {
		return fmt.Errorf("elements differ: %s", strings.Join(d, "; "))
	}
	got, _, err := c.DoormanSetSize(node, set)
	if err != nil {
		return err
	}
	if got != size {
		return fmt.Errorf("%s has size %d, want %d", set, got, size)
	}
	return nil
}

// elementWith reports whether an element of the set, printed as in a
// TableSnapshot (key:value:verdict in hex), contains sub.
func elementWith(s *cluster.TableSnapshot, set, sub string) bool {
	for _, e := range s.Elements[set] {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

// lbAddrHex is an IPv4 address as the start of an element key in hex.
func lbAddrHex(ip string) string {
	a := netip.MustParseAddr(ip).As4()
	return fmt.Sprintf("%x", a[:])
}
