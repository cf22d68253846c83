//go:build e2e

package kind

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/doorman-proxy/doorman/e2e/provider"
)

// minAttempts is how many new connections each fault must have been tried
// with, at the least, for its zero to mean something.
const minAttempts = 1000

// TestKind runs, in this order, what needs doorman deployed as Pods: the
// rollout as users see it, the faults an operator causes, and the
// uninstall, which ends doorman on the cluster and so comes last.
func TestKind(t *testing.T) {
	waitNoNamespaceTerminating(t, 5*time.Minute)
	ns := testNamespace(t, "e2e-kind")
	g := newGRPCurl(t, ns)
	t.Run("Deployed", func(t *testing.T) { testDeployed(t, g) })
	if t.Failed() {
		t.FailNow()
	}
	addr := backends(t, ns, "web", 3)
	cl := clients(t, ns)
	t.Run("AgentsRolloutRestart", func(t *testing.T) { testAgentsRolloutRestart(t, g, cl, addr) })
	t.Run("ControlPlanePodDeleted", func(t *testing.T) { testControlPlanePodDeleted(t, g, cl, addr) })
	t.Run("NodeDrained", func(t *testing.T) { testNodeDrained(t, g, cl, addr) })
	t.Run("Uninstall", func(t *testing.T) { testUninstall(t, ns, cl) })
}

// keepDoormanLogs writes the logs of doorman's Pods to path before the
// uninstall deletes them (the cluster's logs are exported after it).
func keepDoormanLogs(t *testing.T, path string) {
	t.Helper()
	out, err := kubectlErr("-n", doormanNS, "logs", "-l", "app.kubernetes.io/name in (doorman-controlplane,doorman-nodeagent)", "--all-containers", "--prefix", "--tail=-1", "--max-log-requests=10")
	if err != nil {
		t.Logf("logs of doorman's Pods not kept: %v", err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("logs of doorman's Pods in %s", path)
}

// waitNoNamespaceTerminating waits until no namespace is being deleted.
// The suite that runs before deletes its namespaces without waiting for
// them to go: their Pods, EndpointSlices and Services going away are
// changes every agent receives, and the faults below count the bytes an
// agent receives while they happen.
func waitNoNamespaceTerminating(t *testing.T, timeout time.Duration) {
	t.Helper()
	var terminating []string
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		terminating = terminating[:0]
		for _, ns := range list.Items {
			if ns.Status.Phase == corev1.NamespaceTerminating {
				terminating = append(terminating, ns.Name)
			}
		}
		return len(terminating) == 0, nil
	})
	if err != nil {
		t.Fatalf("namespaces still terminating after %s: %v (%v)", timeout, terminating, err)
	}
}

// The control plane runs as a Deployment of 2 Ready replicas on two
// nodes, the agent as a DaemonSet Ready on every node, and the control
// plane's Inspect service, through grpcurl as an operator calls it, lists
// every node as connected with its newest version acknowledged.
func testDeployed(t *testing.T, g *grpcurl) {
	fmt.Print(kubectl(t, "-n", doormanNS, "get", "deployments,daemonsets,pods", "-o", "wide"))
	ctx := context.Background()
	d, err := cs.AppsV1().Deployments(doormanNS).Get(ctx, "doorman-controlplane", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.ReadyReplicas != 2 {
		t.Errorf("control plane: %d Ready replicas, want 2", d.Status.ReadyReplicas)
	}
	nodesOf := map[string]bool{}
	for _, p := range controlPlanePods(t) {
		nodesOf[p.Spec.NodeName] = true
	}
	if len(nodesOf) != 2 {
		t.Errorf("control-plane replicas run on nodes %v, want 2 different nodes", nodesOf)
	}
	ds, err := cs.AppsV1().DaemonSets(doormanNS).Get(ctx, "doorman-nodeagent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := int32(len(prov.Nodes())); ds.Status.NumberReady != n || ds.Status.DesiredNumberScheduled != n {
		t.Errorf("node agents: %d Ready of %d scheduled, want %d", ds.Status.NumberReady, ds.Status.DesiredNumberScheduled, n)
	}
	conn := waitAllConnected(t, g, 2*time.Minute)
	for pod := range conn {
		out := g.call(t, pod, "doorman.v1.InspectService/ListNodes", "")
		fmt.Printf("e2e-kind: grpcurl doorman.v1.InspectService/ListNodes on %s:\n%s", pod, out)
	}
	t.Logf("agents by control-plane replica: %v", conn)
}

// `kubectl rollout restart daemonset/doorman-nodeagent` replaces every
// agent, one node at a time: the kernel keeps the rules while an agent is
// away and the new one changes nothing that is right, so no connection
// fails, new or established.
func testAgentsRolloutRestart(t *testing.T, g *grpcurl, cl []provider.Asker, addr string) {
	l := startLoad(t, cl, addr)
	time.Sleep(2 * time.Second)
	kubectl(t, "-n", doormanNS, "rollout", "restart", "daemonset/doorman-nodeagent")
	kubectl(t, "-n", doormanNS, "rollout", "status", "daemonset/doorman-nodeagent", "--timeout=5m")
	waitAllConnected(t, g, 2*time.Minute)
	for l.attempted.Load() < minAttempts {
		time.Sleep(500 * time.Millisecond)
	}
	failed, flowFailed := l.stop(t, "agents rollout restart")
	if failed != 0 || flowFailed != 0 {
		t.Errorf("%d new and %d established connections failed while the agents restarted, want 0", failed, flowFailed)
	}
}

// Deleting the control-plane Pod most agents are connected to moves them
// to the other replica: no connection fails, and no agent is sent its
// view again in full (its stream bytes stay far below a whole view, its
// full reconciles do not move).
func testControlPlanePodDeleted(t *testing.T, g *grpcurl, cl []provider.Asker, addr string) {
	conn := waitAllConnected(t, g, 2*time.Minute)
	serving, most := "", 0
	for pod, nodes := range conn {
		if len(nodes) > most {
			serving, most = pod, len(nodes)
		}
	}
	before := map[string]map[string]float64{}
	for _, n := range prov.Nodes() {
		before[n.Name] = agentMetrics(t, n.IP)
	}
	l := startLoad(t, cl, addr)
	time.Sleep(2 * time.Second)
	t.Logf("deleting %s, serving %v", serving, conn[serving])
	if err := cs.CoreV1().Pods(doormanNS).Delete(context.Background(), serving, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod %s: %v", serving, err)
	}
	waitDeploymentReady(t, doormanNS, "doorman-controlplane", 3*time.Minute)
	after := waitAllConnected(t, g, 2*time.Minute)
	t.Logf("agents by replica after the deletion: %v", after)
	if _, ok := after[serving]; ok {
		t.Errorf("agents still on the deleted replica %s", serving)
	}
	for l.attempted.Load() < minAttempts {
		time.Sleep(500 * time.Millisecond)
	}
	failed, flowFailed := l.stop(t, "serving control-plane Pod deleted")
	if failed != 0 || flowFailed != 0 {
		t.Errorf("%d new and %d established connections failed while agents moved replica, want 0", failed, flowFailed)
	}
	for _, n := range prov.Nodes() {
		b, a := before[n.Name], agentMetrics(t, n.IP)
		got := a["doorman_agent_stream_bytes_received_total"] - b["doorman_agent_stream_bytes_received_total"]
		full := g.viewBytes(t, controlPlanePods(t)[0].Name, n.Name)
		t.Logf("%s: %.0f bytes received across the move; the whole view is %d bytes", n.Name, got, full)
		if d := a["doorman_agent_full_syncs_total"] - b["doorman_agent_full_syncs_total"]; d != 0 {
			t.Errorf("%s: %v full reconciles across the move, want 0", n.Name, d)
		}
		if got >= float64(full)/2 {
			t.Errorf("%s: received %.0f bytes across the move, the whole view is %d: re-sent in full", n.Name, got, full)
		}
	}
}

// Draining a worker evicts its backends; the Service keeps answering from
// the others without a failed new connection (an evicted Pod serves
// through its grace period, doorman stops choosing it once it is
// terminating), and afterwards every client reaches the Service.
func testNodeDrained(t *testing.T, g *grpcurl, cl []provider.Asker, addr string) {
	node := ""
	for _, n := range prov.Nodes() {
		if strings.HasSuffix(n.Name, "worker2") {
			node = n.Name
		}
	}
	if node == "" {
		t.Fatalf("no node named *-worker2 among %v", prov.Nodes())
	}
	var client provider.Asker
	for _, a := range cl {
		if !strings.HasSuffix(a.Where(), " on "+node) {
			client = a
		}
	}
	l := startLoad(t, []provider.Asker{client}, addr)
	time.Sleep(2 * time.Second)
	kubectl(t, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--pod-selector=app=web", "--timeout=3m")
	defer kubectl(t, "uncordon", node)
	waitDeploymentReady(t, "e2e-kind", "web", 3*time.Minute)
	for l.attempted.Load() < minAttempts/4 {
		time.Sleep(500 * time.Millisecond)
	}
	// An established connection to an evicted Pod ends with the Pod: only
	// new connections are doorman's to keep whole.
	failed, _ := l.stop(t, "node "+node+" drained of the Service's Pods")
	if failed != 0 {
		t.Errorf("%d new connections failed during the drain, want 0: an evicted Pod serves through its grace period, and doorman stops sending it new connections as soon as its endpoint is terminating", failed)
	}
	for _, a := range cl {
		if err := askUntil(a, addr, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	waitAllConnected(t, g, time.Minute)
}

// The documented uninstall — delete what deploy/ applied, run
// deploy/cleanup on every node, delete it — leaves no doorman table on
// any node, and a Service made afterwards is not answered through stale
// rules.
func testUninstall(t *testing.T, ns string, cl []provider.Asker) {
	root := repoRoot(t)
	keepDoormanLogs(t, filepath.Join(root, "out", "kind", "doorman-pods.log"))
	kubectl(t, "delete", "-k", filepath.Join(root, "deploy/overlays/kind"), "--ignore-not-found", "--wait=true", "--timeout=3m")
	kubectl(t, "apply", "-k", filepath.Join(root, "deploy/overlays/kind-cleanup"))
	kubectl(t, "-n", "doorman-cleanup", "rollout", "status", "daemonset/doorman-cleanup", "--timeout=3m")
	kubectl(t, "delete", "-k", filepath.Join(root, "deploy/overlays/kind-cleanup"), "--wait=true", "--timeout=3m")
	for _, n := range prov.Nodes() {
		tables := nodeTables(t, n.Name)
		t.Logf("%s after uninstall: %q", n.Name, strings.TrimSpace(tables))
		if slices.Contains(strings.Split(strings.TrimSpace(tables), "\n"), "table inet doorman") {
			t.Errorf("%s still holds doorman's table after the uninstall:\n%s", n.Name, tables)
		}
	}
	// A Service made now has no proxy: its ClusterIP answers nothing.
	addr := backends(t, ns, "after", 1)
	for _, a := range cl {
		err := wait.PollUntilContextTimeout(context.Background(), time.Second, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			ans, err := a.Ask(actx, "tcp", addr, "hostname")
			if err == nil {
				return false, fmt.Errorf("%s answered from %s (%q) with doorman uninstalled", addr, a.Where(), ans)
			}
			return false, nil
		})
		if err != nil && !wait.Interrupted(err) {
			t.Error(err)
		}
	}
}
