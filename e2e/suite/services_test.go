//go:build e2e

package suite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Reaching a Service": ClusterIP — from Pods and from the
// node itself. Also "Addresses on the way": Pod → ClusterIP → Pod, the
// backend sees the client Pod's own IP.
func TestClusterIP_FromPodsAndNodes(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 3,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP,
		tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	readyEndpoints(t, ns, "backend", 3)
	names := podNames(backends)
	client := &clients[0]

	for _, tc := range []struct {
		proto string
		port  int32
	}{{"tcp", 80}, {"udp", 53}} {
		t.Run("from a Pod over "+tc.proto, func(t *testing.T) {
			target := addr(svc.Spec.ClusterIP, tc.port)
			retry.Eventually(t, time.Minute, "answer from "+target, func() error {
				got, err := fromPod(t, client).ask(tc.proto, target, "hostname")
				if err != nil {
					return err
				}
				if !names[got] {
					return fmt.Errorf("answered by %q, not a backend", got)
				}
				return nil
			})
			got, err := fromPod(t, client).ask(tc.proto, target, "clientip")
			if err != nil {
				t.Fatal(err)
			}
			host, _, _ := net.SplitHostPort(got)
			if host != client.Status.PodIP {
				t.Errorf("backend saw client %s, want the client Pod's own IP %s", host, client.Status.PodIP)
			}
		})
	}
	t.Run("from every node itself", func(t *testing.T) {
		for _, n := range prov.Nodes() {
			from := fromNode(t, n.Name)
			target := addr(svc.Spec.ClusterIP, 80)
			retry.Eventually(t, time.Minute, "answer from "+target+" on "+n.Name, func() error {
				got, err := from.ask("tcp", target, "hostname")
				if err != nil {
					return err
				}
				if !names[got] {
					return fmt.Errorf("answered by %q, not a backend", got)
				}
				return nil
			})
		}
	})
}

// SEMANTICS.md, "Choosing an endpoint": spread — per connection, ≈ even
// over the chosen set.
func TestSpread_PerConnectionEvenOverEndpoints(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 3, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 3)
	c := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	retry.Eventually(t, time.Minute, "first answer from "+target, func() error {
		_, err := c.ask("tcp", target, "hostname")
		return err
	})
	// Every backend must have been programmed: wait until each answered once.
	names := podNames(backends)
	seen := map[string]bool{}
	retry.Eventually(t, time.Minute, "every backend answering", func() error {
		got, err := c.ask("tcp", target, "hostname")
		if err != nil {
			return err
		}
		if !names[got] {
			return fmt.Errorf("answered by %q, not a backend", got)
		}
		seen[got] = true
		if len(seen) != len(names) {
			return fmt.Errorf("%d of %d backends seen", len(seen), len(names))
		}
		return nil
	})
	const calls = 300
	counts := map[string]int{}
	for range calls {
		got, err := c.ask("tcp", target, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		counts[got]++
	}
	// Expected 100 each; 50 is six standard deviations below.
	for name := range names {
		if counts[name] < calls/len(names)/2 {
			t.Errorf("backend %s got %d of %d calls, want about %d: %v", name, counts[name], calls, calls/len(names), counts)
		}
	}
	t.Logf("spread over %d calls: %v", calls, counts)
}

// SEMANTICS.md, "Reaching a Service": NodePort — <any node address>:nodePort
// on every node, whether or not it runs a backend.
func TestNodePort_EveryNodeWithOrWithoutBackend(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 1, containerPort("http", corev1.ProtocolTCP, 8080),
		containerPort("dns", corev1.ProtocolUDP, 8081))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort,
		tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	readyEndpoints(t, ns, "backend", 1)
	for _, p := range svc.Spec.Ports {
		proto := "tcp"
		if p.Protocol == corev1.ProtocolUDP {
			proto = "udp"
		}
		for _, n := range prov.Nodes() {
			target := addr(n.IP, p.NodePort)
			t.Run(fmt.Sprintf("%s via %s", proto, n.Name), func(t *testing.T) {
				retry.Eventually(t, time.Minute, "answer from "+target, func() error {
					got, err := fromExternal(t).ask(proto, target, "hostname")
					if err != nil {
						return err
					}
					if got != backends[0].Name {
						return fmt.Errorf("answered by %q, want %s", got, backends[0].Name)
					}
					return nil
				})
			})
		}
	}
}

// Scale: -e2e.services Services (default 1,000) in front of the same
// Pods, each answering on its ClusterIP.
func TestScale_EveryServiceAnswers(t *testing.T) {
	track(t)
	n := *flagServices
	if n <= 0 {
		skipAs(t, "skipped by a flag", "-e2e.services=0")
	}
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	names := podNames(backends)
	ctx := context.Background()
	cs := prov.Client()
	c := fromPod(t, &clients[0])

	start := time.Now()
	ips := make([]string, n)
	if err := parallel(16, n, func(i int) error {
		svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i)},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "backend"},
				Ports:    []corev1.ServicePort{tcpPort("http", 80, 8080)},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create service %d: %w", i, err)
		}
		ips[i] = svc.Spec.ClusterIP
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d services in %s", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var answered atomic.Int64
	deadline := time.Now().Add(time.Duration(2+n/500) * time.Minute)
	err := parallel(16, n, func(i int) error {
		target := addr(ips[i], 80)
		for {
			got, err := c.ask("tcp", target, "hostname")
			if err == nil && names[got] {
				answered.Add(1)
				return nil
			}
			if err == nil {
				err = fmt.Errorf("answered by %q, not a backend", got)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("svc-%05d (%s): %w", i, target, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatalf("%d of %d services answered: %v", answered.Load(), n, err)
	}
	t.Logf("all %d services answered %s after creation", n, time.Since(start).Round(time.Millisecond))
}

// parallel runs fn(0..n-1) on workers goroutines; it returns the errors
// of the first few failures.
func parallel(workers, n int, fn func(i int) error) error {
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("… and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}
