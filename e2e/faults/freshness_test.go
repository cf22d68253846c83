//go:build e2e

package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// freshApp labels the backends of Service fresh.
const freshApp = "fresh"

// freshPod creates an echo Pod on node, labelled as a backend of fresh,
// and waits until it has an IP.
func freshPod(t *testing.T, name, node string) {
	t.Helper()
	ctx := context.Background()
	cs := c.Client()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": freshApp}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "echo", Image: "doorman.local/echo", Ports: []corev1.ContainerPort{
				{Name: "http", Protocol: corev1.ProtocolTCP, ContainerPort: 8080},
			}}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	retry.Eventually(t, time.Minute, "pod "+name+" running", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.PodIP == "" {
			return fmt.Errorf("pod %s has no IP", name)
		}
		return nil
	})
}

// onlyBackend asks the Service at target from the echo Pod of every node
// n times and returns an error naming any answer other than want.
func onlyBackend(ctx context.Context, target, want string, n int) error {
	for _, node := range c.Nodes() {
		dial, err := c.DialFromPod(ns, "web-"+node.Name)
		if err != nil {
			return err
		}
		for range n {
			got, err := ask(ctx, dial, target)
			if err != nil {
				return fmt.Errorf("from %s: %w", node.Name, err)
			}
			if got != want {
				return fmt.Errorf("from %s: answered by %q, want only %q", node.Name, got, want)
			}
		}
	}
	return nil
}

// Row 10: a control-plane replica whose API-server watch stalled (no
// error, no event, no bookmark) never takes a node back to old endpoints:
// the agents refuse its updates, which are behind what they applied, and
// its /readyz says which resource went quiet; once it has caught up, the
// agents accept it.
func TestStaleReplicaRefused(t *testing.T) {
	ctx := context.Background()
	first := c.ControlPlaneGRPC()
	cs := c.Client()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, first, 30*time.Second)
	}

	// Service fresh, one backend (fresh-old); every node answers with it.
	freshPod(t, "fresh-old", "node1")
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fresh", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": freshApp},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: webPort, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.CoreV1().Services(ns).Delete(context.Background(), "fresh", metav1.DeleteOptions{}) }()
	target := addr(svc.Spec.ClusterIP, webPort)
	retry.Eventually(t, time.Minute, "every node reaches fresh-old", func() error { return onlyBackend(ctx, target, "fresh-old", 3) })

	second, err := c.StartControlPlaneReplicaWith(ctx, cluster.ReplicaOptions{
		FreezableAPIServer: true,
		Args:               []string{"--stale-after=15s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Stop()
	defer func() {
		if !c.ControlPlaneRunning() {
			if err := c.StartControlPlane(context.Background()); err != nil {
				t.Errorf("restart replica 1: %v", err)
			}
		}
	}()
	key := ns + "/fresh:"
	if err := retry.Until(ctx, 30*time.Second, func() error {
		_, err := cpEntryDigest(ctx, second.GRPC, "node1", key)
		return err
	}); err != nil {
		t.Fatalf("replica 2 does not hold fresh: %v", err)
	}

	// 1. Replica 2's watch stalls; the backend changes (fresh-new in,
	// fresh-old out but still running, so a node sent back to it would
	// still reach it), and the agents on replica 1 apply it.
	if err := second.FreezeAPIServer(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = second.ThawAPIServer()
		}
	}()
	frozenAt := time.Now()
	freshPod(t, "fresh-new", "node2")
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "fresh-old", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"app":"retired"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, time.Minute, "every node reaches only fresh-new", func() error { return onlyBackend(ctx, target, "fresh-new", 5) })
	want := map[string]uint64{}
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, first, 30*time.Second)
		d, err := agentEntryDigest(ctx, n.Name, key)
		if err != nil {
			t.Fatal(err)
		}
		want[n.Name] = d
		if old, err := cpEntryDigest(ctx, second.GRPC, n.Name, key); err != nil || old == d {
			t.Fatalf("replica 2's entry for %s: %x (err %v), want it stale, not %x", n.Name, old, err, d)
		}
	}

	// 2. Replica 1 stops: the agents reach only the stale replica 2.
	marks := map[string]cluster.LogMark{}
	for _, n := range c.Nodes() {
		marks[n.Name] = cluster.MarkLog(c.AgentLog(n.Name))
	}
	secondLog := cluster.MarkLog(second.Log)
	if err := c.StopControlPlane(); err != nil {
		t.Fatal(err)
	}
	refusedBy := func(node string) error {
		log := marks[node].Since()
		if !strings.Contains(log, "update refused: behind what this node applied") || !strings.Contains(log, second.NodeAddr) {
			return fmt.Errorf("%s has not logged a refusal of %s", node, second.NodeAddr)
		}
		return nil
	}
	// For 25 s: no node goes back to fresh-old, in the agent's view or in
	// what the Service answers; meanwhile every agent refuses replica 2.
	checks := 0
	for until := time.Now().Add(25 * time.Second); time.Now().Before(until); checks++ {
		for _, n := range c.Nodes() {
			d, err := agentEntryDigest(ctx, n.Name, key)
			if err != nil {
				t.Fatal(err)
			}
			if d != want[n.Name] {
				t.Fatalf("%s went back: entry digest %x, want %x", n.Name, d, want[n.Name])
			}
		}
		if err := onlyBackend(ctx, target, "fresh-new", 3); err != nil {
			t.Fatalf("after replica 1 stopped: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.Nodes() {
		if err := refusedBy(n.Name); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d rounds of checks while agents could reach only the stale replica", checks)
	// last_error is the latest failure: the refusal, or replica 1 down.
	for _, n := range c.Nodes() {
		retry.Eventually(t, 30*time.Second, n.Name+" last_error shows the refusal", func() error {
			st, err := agentState(ctx, n.Name, false)
			if err != nil {
				return err
			}
			if last := st.GetLastError(); !strings.Contains(last, "behind what this node applied") || !strings.Contains(last, "endpointslices seen") {
				return fmt.Errorf("last_error %q, want the refusal naming endpointslices", last)
			}
			return nil
		})
	}
	if strings.Contains(secondLog.Since(), "update acknowledged") {
		t.Errorf("an agent acknowledged an update of the stale replica:\n%s", secondLog.Since())
	}

	// 3. Its /readyz has turned unready, naming what went quiet.
	retry.Eventually(t, time.Minute, "replica 2 unready", func() error {
		code, body, err := second.Readyz(ctx)
		if err != nil {
			return err
		}
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "endpointslices: no event or bookmark for") {
			return fmt.Errorf("/readyz %d %q", code, body)
		}
		t.Logf("replica 2 /readyz %s after the freeze: %d %s", time.Since(frozenAt).Round(time.Second), code, strings.TrimSpace(body))
		return nil
	})

	// 4. Thawed, replica 2 catches up and the agents accept it.
	if err := second.ThawAPIServer(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	start := time.Now()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, second.GRPC, 3*time.Minute)
		if d, err := agentEntryDigest(ctx, n.Name, key); err != nil || d != want[n.Name] {
			t.Errorf("%s after replica 2 caught up: entry %x (err %v), want %x", n.Name, d, err, want[n.Name])
		}
	}
	t.Logf("every agent accepted replica 2 %s after the thaw", time.Since(start).Round(time.Millisecond))
	if err := onlyBackend(ctx, target, "fresh-new", 3); err != nil {
		t.Error(err)
	}

	// Back to replica 1 for the tests that follow.
	if err := c.StartControlPlane(ctx); err != nil {
		t.Fatal(err)
	}
	second.Stop()
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, first, time.Minute)
	}
}
