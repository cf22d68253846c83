//go:build e2e

package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

func k8sBinDir(t *testing.T) string {
	cache := os.Getenv("DOORMAN_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "doorman")
	}
	dir := filepath.Join(cache, "k8s-v1.36.3", "bin")
	if _, err := os.Stat(filepath.Join(dir, "kube-controller-manager")); err != nil {
		t.Fatalf("Kubernetes binaries missing in %s: run e2e/hack/build-k8s.sh", dir)
	}
	return dir
}

// The cluster itself, with no Service proxy: the real controllers fill a
// Deployment's EndpointSlice from the simulated Pods, Pods reach each other
// across nodes, readiness flips and graceful deletion show in the slice.
func TestCluster_PodsEndpointSlicesAndPodNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces): run the test as root")
	}
	ctx := context.Background()
	start := time.Now()
	c, err := Start(ctx, Config{
		Nodes:     3,
		K8sBinDir: k8sBinDir(t),
		Proxy:     ProxyNone,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Info}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
		if left, _ := listNetNS(c.Prefix() + "-"); len(left) != 0 {
			t.Errorf("namespaces left after Close: %v", left)
		}
	})
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))
	cs := c.Client()

	retry.Eventually(t, 30*time.Second, "the default ServiceAccount", func() error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	labels := map[string]string{"app": "web"}
	start = time.Now()
	_, err = cs.AppsV1().Deployments("default").Create(ctx, Deployment("default", "web", 3, corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](3),
		Containers: []corev1.Container{{
			Name: "web", Image: "doorman.local/echo",
			Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
			},
		}},
	}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	var pods []corev1.Pod
	retry.Eventually(t, 90*time.Second, "three web Pods running", func() error {
		pl, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		pods = pl.Items
		nodes := map[string]bool{}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("pod %s %s", p.Name, p.Status.Phase)
			}
			if len(p.Status.PodIPs) != 2 || net.ParseIP(p.Status.PodIPs[0].IP).To4() == nil || net.ParseIP(p.Status.PodIPs[1].IP).To4() != nil {
				return fmt.Errorf("pod %s podIPs %v, want an IPv4 and an IPv6 address", p.Name, p.Status.PodIPs)
			}
			nodes[p.Spec.NodeName] = true
		}
		if len(pods) != 3 || len(nodes) != 3 {
			return fmt.Errorf("%d pods on %d nodes", len(pods), len(nodes))
		}
		return nil
	})
	t.Logf("3 pods running on 3 nodes in %s", time.Since(start).Round(time.Millisecond))
	retry.Eventually(t, 30*time.Second, "the slice: 3 ready", func() error { return sliceReady(ctx, c, "web", 3, 0) })
	t.Logf("endpointslice has 3 ready endpoints %s after the deployment", time.Since(start).Round(time.Millisecond))

	// Pod network, both families: every Pod reaches every other Pod
	// directly, across nodes, and is seen with its own address of the
	// family used.
	for _, from := range pods {
		dial, err := c.DialFromPod(from.Namespace, from.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range pods {
			for fam := range from.Status.PodIPs {
				for _, proto := range []string{"tcp", "udp"} {
					port := "8080"
					if proto == "udp" {
						port = "5353"
					}
					target := net.JoinHostPort(to.Status.PodIPs[fam].IP, port)
					got, err := echo.Ask(ctx, dial, proto, target, "hostname")
					if err != nil || got != to.Name {
						t.Errorf("%s -> %s over %s: %q, %v", from.Name, target, proto, got, err)
					}
					got, err = echo.Ask(ctx, dial, proto, target, "clientip")
					want := from.Status.PodIPs[fam].IP
					if host, _, _ := net.SplitHostPort(got); err != nil || host != want {
						t.Errorf("%s -> %s over %s: seen as %q, want %s (%v)", from.Name, target, proto, got, want, err)
					}
				}
			}
		}
	}
	// External namespace and nodes reach Pods too, in both families.
	for _, ip := range pods[0].Status.PodIPs {
		if got, err := echo.Ask(ctx, c.DialFromExternal(), "tcp", net.JoinHostPort(ip.IP, "8080"), "hostname"); err != nil || got != pods[0].Name {
			t.Errorf("external -> %s at %s: %q, %v", pods[0].Name, ip.IP, got, err)
		}
	}
	for _, n := range c.Nodes() {
		dial, err := c.DialFromNode(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range pods[0].Status.PodIPs {
			if got, err := echo.Ask(ctx, dial, "tcp", net.JoinHostPort(ip.IP, "8080"), "hostname"); err != nil || got != pods[0].Name {
				t.Errorf("node %s -> %s at %s: %q, %v", n.Name, pods[0].Name, ip.IP, got, err)
			}
		}
	}
	// The Service is IPv4 (single-stack, the primary family): its slices
	// are IPv4 only, as before the cluster was dual-stack.
	if sl, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"}); err != nil {
		t.Fatal(err)
	} else {
		for _, s := range sl.Items {
			if s.AddressType != discoveryv1.AddressTypeIPv4 {
				t.Errorf("slice %s of a single-stack Service has address type %s", s.Name, s.AddressType)
			}
		}
	}

	// Readiness flip.
	if err := c.SetPodReady(ctx, "default", pods[0].Name, false); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 30*time.Second, "the slice: 2 ready after the readiness flip", func() error { return sliceReady(ctx, c, "web", 2, 0) })
	if err := c.SetPodReady(ctx, "default", pods[0].Name, true); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 30*time.Second, "the slice: 3 ready again", func() error { return sliceReady(ctx, c, "web", 3, 0) })

	// Graceful deletion: serving and terminating during the grace period,
	// still answering; then gone and replaced.
	victim := pods[1]
	if err := cs.CoreV1().Pods("default").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, 30*time.Second, "the slice: 3 ready, 1 terminating", func() error { return sliceReady(ctx, c, "web", 3, 1) })
	dial, _ := c.DialFromPod("default", pods[0].Name)
	if got, err := echo.Ask(ctx, dial, "tcp", net.JoinHostPort(victim.Status.PodIP, "8080"), "hostname"); err != nil || got != victim.Name {
		t.Errorf("terminating pod %s does not answer during its grace period: %q, %v", victim.Name, got, err)
	}
	retry.Eventually(t, 30*time.Second, "the deleted Pod gone", func() error {
		_, err := cs.CoreV1().Pods("default").Get(ctx, victim.Name, metav1.GetOptions{})
		if err == nil {
			return fmt.Errorf("pod %s still there", victim.Name)
		}
		return sliceReady(ctx, c, "web", 3, 0)
	})
}

// sliceReady checks the Service's slices: ready endpoints, and endpoints
// that are serving and terminating.
func sliceReady(ctx context.Context, c *Cluster, svc string, ready, terminating int) error {
	sl, err := c.Client().DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		return err
	}
	r, term := 0, 0
	for _, s := range sl.Items {
		for _, e := range s.Endpoints {
			if ptr.Deref(e.Conditions.Ready, false) {
				r++
			}
			if ptr.Deref(e.Conditions.Serving, false) && ptr.Deref(e.Conditions.Terminating, false) {
				term++
			}
		}
	}
	if r != ready || term != terminating {
		return fmt.Errorf("%d ready and %d serving+terminating endpoints, want %d and %d", r, term, ready, terminating)
	}
	return nil
}
