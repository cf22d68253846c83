//go:build e2e

package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Choosing an endpoint": readiness — only ready endpoints;
// an endpoint leaves the set as soon as its slice says not ready.
func TestSemantics_Readiness(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 3, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 3)
	c := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	waitAnswers(t, c, "tcp", target, podNames(backends))

	ctx := context.Background()
	out := backends[0]
	if err := prov.SetPodReady(ctx, ns, out.Name, false); err != nil {
		t.Fatal(err)
	}
	waitEndpoint(t, ns, "backend", out.Status.PodIP, false, false, false)
	start := time.Now()
	rest := set(backends[1].Name, backends[2].Name)
	waitOnly(t, c, "tcp", target, rest, 30)
	t.Logf("not-ready endpoint out of use %s after its slice said so", time.Since(start).Round(time.Millisecond))
	// The Pod still answers on its own address: only the Service left it.
	if _, err := c.ask("tcp", addr(out.Status.PodIP, 8080), "hostname"); err != nil {
		t.Fatalf("the not-ready Pod itself: %v", err)
	}
	if err := prov.SetPodReady(ctx, ns, out.Name, true); err != nil {
		t.Fatal(err)
	}
	waitAnswers(t, c, "tcp", target, podNames(backends))
}

// SEMANTICS.md: terminating fallback — when a Service has no ready
// endpoints, use serving + terminating ones; under both traffic policies
// (upstream: "fallback to terminating endpoints", Cluster and Local).
func TestSemantics_TerminatingFallback(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	labels := map[string]string{"app": "backend"}
	// a terminates (it keeps serving for its long grace period); b stays.
	a := echoPod(t, ns, "a", nodes[0], labels, 300, containerPort("http", corev1.ProtocolTCP, 8080))
	b := echoPod(t, ns, "b", nodes[1], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	client := echoPod(t, ns, "client", nodes[1], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	cl := service(t, ns, "cluster", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	local := service(t, ns, "local", "backend", corev1.ServiceTypeNodePort, tcpPort("http", 80, 8080))
	updateService(t, ns, "local", func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	c, ext := fromPod(t, &client), fromExternal(t)
	clusterIP := addr(cl.Spec.ClusterIP, 80)
	nodePortA := addr(nodeOf(t, nodes[0]).IP, local.Spec.Ports[0].NodePort)
	waitAnswers(t, c, "tcp", clusterIP, set(a.Name, b.Name))
	waitOnly(t, ext, "tcp", nodePortA, set(a.Name), 10)

	deletePod(t, ns, a.Name, 300)
	waitEndpoint(t, ns, "cluster", a.Status.PodIP, false, true, true)
	t.Run("ready endpoints preferred over terminating", func(t *testing.T) {
		waitOnly(t, c, "tcp", clusterIP, set(b.Name), 20)
	})
	t.Run("Local: terminating local endpoint used when no local one is ready", func(t *testing.T) {
		waitOnly(t, ext, "tcp", nodePortA, set(a.Name), 10)
	})
	if err := prov.SetPodReady(context.Background(), ns, b.Name, false); err != nil {
		t.Fatal(err)
	}
	waitEndpoint(t, ns, "cluster", b.Status.PodIP, false, false, false)
	t.Run("Cluster: no ready endpoint, the serving terminating one is used", func(t *testing.T) {
		waitOnly(t, c, "tcp", clusterIP, set(a.Name), 20)
	})
}

// SEMANTICS.md: spread — per connection, ≈ even over the chosen set.
func TestSemantics_Spread(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 3, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 3)
	c := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	names := podNames(backends)
	waitAnswers(t, c, "tcp", target, names)
	const calls = 300
	counts := sample(t, c, "tcp", target, calls)
	// Expected 100 each (binomial, σ ≈ 8.2): 50 is six σ below.
	for name := range names {
		if counts[name] < calls/len(names)/2 {
			t.Errorf("backend %s got %d of %d calls, want about %d: %v", name, counts[name], calls, calls/len(names), counts)
		}
	}
	t.Logf("spread over %d connections: %v", calls, counts)
}

// affinityService creates a Service with sessionAffinity ClientIP in
// front of three echo Pods and returns it and the Pods.
func affinityService(t *testing.T, ns string, typ corev1.ServiceType, timeout int32) (*corev1.Service, []corev1.Pod) {
	t.Helper()
	backends := echoDeployment(t, ns, "backend", 3, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sticky"},
		Spec: corev1.ServiceSpec{
			Type:            typ,
			Selector:        map[string]string{"app": "backend"},
			Ports:           []corev1.ServicePort{tcpPort("http", 80, 8080)},
			SessionAffinity: corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{
				ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(timeout)},
			},
		},
	})
	readyEndpoints(t, ns, "sticky", 3)
	return svc, backends
}

// waitSticky polls until n requests in a row are answered by one backend,
// which it returns.
func waitSticky(t *testing.T, a asker, proto, target string, names map[string]bool, n int) string {
	t.Helper()
	var first string
	retry.Eventually(t, time.Minute, fmt.Sprintf("%d answers in a row by one backend of %s from %s", n, target, a.where), func() error {
		first = ""
		for i := range n {
			got, err := a.ask(proto, target, "hostname")
			if err != nil {
				return err
			}
			if !names[got] {
				return fmt.Errorf("answered by %q, not a backend", got)
			}
			if first == "" {
				first = got
			} else if got != first {
				return fmt.Errorf("answer %d by %s after %s", i, got, first)
			}
		}
		return nil
	})
	return first
}

// SEMANTICS.md: sessionAffinity ClientIP — same client IP → same endpoint
// (ClusterIP).
func TestSemantics_SessionAffinity_ClusterIP(t *testing.T) {
	track(t)
	ns := namespace(t)
	svc, backends := affinityService(t, ns, corev1.ServiceTypeClusterIP, 10800)
	clients := echoDeployment(t, ns, "client", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	target := addr(svc.Spec.ClusterIP, 80)
	names := podNames(backends)
	for i := range clients {
		c := fromPod(t, &clients[i])
		got := waitSticky(t, c, "tcp", target, names, 5)
		counts := sample(t, c, "tcp", target, 30)
		if len(counts) != 1 || counts[got] != 30 {
			t.Errorf("client %s: 30 calls answered by %v, want all by %s", clients[i].Name, counts, got)
		}
	}
	t.Run("from a node", func(t *testing.T) {
		n := fromNode(t, nodeNames(t, 1)[0])
		got := waitSticky(t, n, "tcp", target, names, 5)
		if counts := sample(t, n, "tcp", target, 30); counts[got] != 30 {
			t.Errorf("30 calls answered by %v, want all by %s", counts, got)
		}
	})
}

// SEMANTICS.md: sessionAffinity ClientIP through a NodePort.
func TestSemantics_SessionAffinity_NodePort(t *testing.T) {
	track(t)
	ns := namespace(t)
	svc, backends := affinityService(t, ns, corev1.ServiceTypeNodePort, 10800)
	ext := fromExternal(t)
	names := podNames(backends)
	for _, n := range prov.Nodes() {
		target := addr(n.IP, svc.Spec.Ports[0].NodePort)
		got := waitSticky(t, ext, "tcp", target, names, 5)
		if counts := sample(t, ext, "tcp", target, 30); counts[got] != 30 {
			t.Errorf("via %s: 30 calls answered by %v, want all by %s", n.Name, counts, got)
		}
	}
}

// SEMANTICS.md: switching affinity on and off works live.
func TestSemantics_SessionAffinity_SwitchLive(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 3, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 3)
	names := podNames(backends)
	c := fromPod(t, &clients[0])
	targets := map[string]struct {
		a      asker
		target string
	}{
		"ClusterIP": {c, addr(svc.Spec.ClusterIP, 80)},
		"NodePort":  {fromExternal(t), addr(prov.Nodes()[0].IP, svc.Spec.Ports[0].NodePort)},
	}
	for name, tc := range targets {
		t.Run(name+" spread without affinity", func(t *testing.T) { waitAnswers(t, tc.a, "tcp", tc.target, names) })
	}
	updateService(t, ns, "backend", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP })
	for name, tc := range targets {
		t.Run(name+" sticky once on", func(t *testing.T) { waitSticky(t, tc.a, "tcp", tc.target, names, 20) })
	}
	updateService(t, ns, "backend", func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
		s.Spec.SessionAffinityConfig = nil
	})
	for name, tc := range targets {
		t.Run(name+" spread again once off", func(t *testing.T) { waitAnswers(t, tc.a, "tcp", tc.target, names) })
	}
}

// SEMANTICS.md: affinity holds until timeoutSeconds of idleness.
func TestSemantics_SessionAffinity_Timeout(t *testing.T) {
	track(t)
	ns := namespace(t)
	const timeout = 3
	svc, backends := affinityService(t, ns, corev1.ServiceTypeClusterIP, timeout)
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	c := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	names := podNames(backends)
	first := waitSticky(t, c, "tcp", target, names, 5)

	t.Run("kept while in use", func(t *testing.T) {
		// Calls 1.5 s apart span more than the timeout; each use renews it.
		for i := range 4 {
			time.Sleep(1500 * time.Millisecond)
			got, err := c.ask("tcp", target, "hostname")
			if err != nil {
				t.Fatal(err)
			}
			if got != first {
				t.Fatalf("call %d, %s after the previous one, answered by %s, want %s", i, 1500*time.Millisecond, got, first)
			}
		}
	})
	t.Run("forgotten after the timeout", func(t *testing.T) {
		// After an idle timeout the choice is random again: with three
		// backends the same one comes back with probability 1/3 per round.
		prev := first
		for round := range 10 {
			time.Sleep(timeout*time.Second + 1500*time.Millisecond)
			got, err := c.ask("tcp", target, "hostname")
			if err != nil {
				t.Fatal(err)
			}
			if got != prev {
				t.Logf("round %d: %s after %s", round, got, prev)
				return
			}
		}
		t.Errorf("10 rounds idle past the %ds timeout all answered by %s (chance 1/3^10 if the affinity expired)", timeout, prev)
	})
}

// SEMANTICS.md: externalTrafficPolicy Local — external traffic
// (NodePort, LB, externalIP) only to endpoints on the receiving node,
// client source IP preserved, dropped when the node has none; traffic from
// Pods and from the node itself still uses all endpoints.
func TestSemantics_ExternalTrafficPolicyLocal(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	labels := map[string]string{"app": "backend"}
	a := echoPod(t, ns, "a", nodes[0], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	b := echoPod(t, ns, "b", nodes[1], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	client := echoPod(t, ns, "client", nodes[2], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	eip := externalAddr()
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              labels,
			ExternalIPs:           []string{eip},
			Ports:                 []corev1.ServicePort{tcpPort("http", 80, 8080), udpPort("dns", 53, 8081)},
		},
	})
	readyEndpoints(t, ns, "local", 2)
	if err := prov.RouteFromExternal(eip+"/32", nodes[0]); err != nil {
		t.Fatal(err)
	}
	ext := fromExternal(t)
	local := map[string]string{nodes[0]: a.Name, nodes[1]: b.Name}
	for i, p := range svc.Spec.Ports {
		proto := []string{"tcp", "udp"}[i]
		for _, n := range nodes[:2] {
			target := addr(nodeOf(t, n).IP, p.NodePort)
			t.Run(fmt.Sprintf("%s NodePort on %s only to its local endpoint, source kept", proto, n), func(t *testing.T) {
				waitOnly(t, ext, proto, target, set(local[n]), 20)
				got, err := ext.ask(proto, target, "clientip")
				if err != nil {
					t.Fatal(err)
				}
				if h, want := clientHost(t, got), prov.ExternalClientIP(); h != want {
					t.Errorf("backend saw %s, want the external client's own address %s", h, want)
				}
			})
		}
		t.Run(fmt.Sprintf("%s NodePort on %s without endpoints dropped", proto, nodes[2]), func(t *testing.T) {
			target := addr(nodeOf(t, nodes[2]).IP, p.NodePort)
			waitFails(t, ext, proto, target, "dropped", anyError)
		})
	}
	t.Run("externalIP only to the receiving node's endpoint, source kept", func(t *testing.T) {
		target := addr(eip, 80)
		waitOnly(t, ext, "tcp", target, set(a.Name), 20)
		got, err := ext.ask("tcp", target, "clientip")
		if err != nil {
			t.Fatal(err)
		}
		if h, want := clientHost(t, got), prov.ExternalClientIP(); h != want {
			t.Errorf("backend saw %s, want %s", h, want)
		}
	})
	both := set(a.Name, b.Name)
	t.Run("Pods use every endpoint through the ClusterIP", func(t *testing.T) {
		waitAnswers(t, fromPod(t, &client), "tcp", addr(svc.Spec.ClusterIP, 80), both)
	})
	t.Run("Pods use every endpoint through the NodePort of a node without one", func(t *testing.T) {
		waitAnswers(t, fromPod(t, &client), "tcp", addr(nodeOf(t, nodes[2]).IP, svc.Spec.Ports[0].NodePort), both)
	})
	t.Run("a node without endpoints reaches every endpoint through its own NodePort", func(t *testing.T) {
		waitAnswers(t, fromNode(t, nodes[2]), "tcp", addr(nodeOf(t, nodes[2]).IP, svc.Spec.Ports[0].NodePort), both)
	})
}

// SEMANTICS.md: externalTrafficPolicy Cluster — any endpoint; masqueraded
// so replies return through the node.
func TestSemantics_ExternalTrafficPolicyCluster_Masqueraded(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	labels := map[string]string{"app": "backend"}
	a := echoPod(t, ns, "a", nodes[0], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	b := echoPod(t, ns, "b", nodes[1], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	eip := externalAddr()
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
		Spec: corev1.ServiceSpec{
			Type:        corev1.ServiceTypeNodePort,
			Selector:    labels,
			ExternalIPs: []string{eip},
			Ports:       []corev1.ServicePort{tcpPort("http", 80, 8080), udpPort("dns", 53, 8081)},
		},
	})
	readyEndpoints(t, ns, "cluster", 2)
	// The external IP arrives on the node without endpoints.
	if err := prov.RouteFromExternal(eip+"/32", nodes[2]); err != nil {
		t.Fatal(err)
	}
	ext := fromExternal(t)
	both := set(a.Name, b.Name)
	for i, proto := range []string{"tcp", "udp"} {
		for _, target := range []string{
			addr(eip, svc.Spec.Ports[i].Port),
			addr(nodeOf(t, nodes[2]).IP, svc.Spec.Ports[i].NodePort),
			addr(nodeOf(t, nodes[0]).IP, svc.Spec.Ports[i].NodePort),
		} {
			t.Run(proto+" "+target, func(t *testing.T) {
				waitAnswers(t, ext, proto, target, both)
				for range 10 {
					got, err := ext.ask(proto, target, "clientip")
					if err != nil {
						t.Fatal(err)
					}
					if h := clientHost(t, got); h == prov.ExternalClientIP() {
						t.Fatalf("backend saw the client's own address %s, want it masqueraded", h)
					}
				}
			})
		}
	}
}

// healthCheck is the body of a healthCheckNodePort answer.
type healthCheck struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints int `json:"localEndpoints"`
}

// askHealth GETs a node's healthCheckNodePort from the external client.
func askHealth(t *testing.T, nodeIP string, port int32) (int, healthCheck, error) {
	t.Helper()
	tr := &http.Transport{DialContext: prov.DialFromExternal(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr(nodeIP, port)+"/", nil)
	if err != nil {
		return 0, healthCheck{}, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, healthCheck{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, healthCheck{}, err
	}
	var hc healthCheck
	if err := json.Unmarshal(body, &hc); err != nil {
		return resp.StatusCode, hc, fmt.Errorf("body %q: %w", body, err)
	}
	return resp.StatusCode, hc, nil
}

// SEMANTICS.md: healthCheckNodePort (Local policy) — each node answers
// HTTP on that port: 200 with the count of local ready endpoints, 503 when
// none (terminating-only counts as none).
func TestSemantics_HealthCheckNodePort(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	labels := map[string]string{"app": "backend"}
	echoPod(t, ns, "a1", nodes[0], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	echoPod(t, ns, "a2", nodes[0], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	b := echoPod(t, ns, "b", nodes[1], labels, 300, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "lb"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              labels,
			Ports:                 []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	hcnp := svc.Spec.HealthCheckNodePort
	if hcnp == 0 {
		t.Fatal("the API server allocated no healthCheckNodePort")
	}
	readyEndpoints(t, ns, "lb", 3)
	expect := func(t *testing.T, node string, code, count int) {
		t.Helper()
		retry.Eventually(t, time.Minute, fmt.Sprintf("health check of %s/lb on %s: %d with %d local endpoints", ns, node, code, count), func() error {
			got, hc, err := askHealth(t, nodeOf(t, node).IP, hcnp)
			if err != nil {
				return err
			}
			if got != code || hc.LocalEndpoints != count || hc.Service.Namespace != ns || hc.Service.Name != "lb" {
				return fmt.Errorf("got %d %+v", got, hc)
			}
			return nil
		})
	}
	t.Run("two local endpoints", func(t *testing.T) { expect(t, nodes[0], http.StatusOK, 2) })
	t.Run("one local endpoint", func(t *testing.T) { expect(t, nodes[1], http.StatusOK, 1) })
	t.Run("none", func(t *testing.T) { expect(t, nodes[2], http.StatusServiceUnavailable, 0) })
	t.Run("terminating only counts as none", func(t *testing.T) {
		deletePod(t, ns, b.Name, 300)
		waitEndpoint(t, ns, "lb", b.Status.PodIP, false, true, true)
		expect(t, nodes[1], http.StatusServiceUnavailable, 0)
	})
}

// SEMANTICS.md: internalTrafficPolicy Local — ClusterIP traffic only to
// endpoints on the sending node; dropped when none. External traffic
// (externalTrafficPolicy Cluster) still uses every endpoint.
func TestSemantics_InternalTrafficPolicyLocal(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	labels := map[string]string{"app": "backend"}
	a := echoPod(t, ns, "a", nodes[0], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	b := echoPod(t, ns, "b", nodes[1], labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	local := map[string]string{nodes[0]: a.Name, nodes[1]: b.Name}
	var clients []corev1.Pod
	for i, n := range nodes[:3] {
		clients = append(clients, echoPod(t, ns, fmt.Sprintf("client-%d", i), n, nil, 2, containerPort("http", corev1.ProtocolTCP, 8080)))
	}
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "itp"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			Selector:              labels,
			Ports:                 []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "itp", 2)
	target := addr(svc.Spec.ClusterIP, 80)
	for i, n := range nodes[:2] {
		t.Run("Pod on "+n+" only to its node's endpoint", func(t *testing.T) {
			waitOnly(t, fromPod(t, &clients[i]), "tcp", target, set(local[n]), 20)
		})
		t.Run(n+" itself only to its endpoint", func(t *testing.T) {
			waitOnly(t, fromNode(t, n), "tcp", target, set(local[n]), 20)
		})
	}
	t.Run("Pod on "+nodes[2]+" without endpoints dropped", func(t *testing.T) {
		waitFails(t, fromPod(t, &clients[2]), "tcp", target, "dropped", anyError)
	})
	t.Run("NodePort from outside uses every endpoint", func(t *testing.T) {
		np := addr(nodeOf(t, nodes[2]).IP, svc.Spec.Ports[0].NodePort)
		waitAnswers(t, fromExternal(t), "tcp", np, set(a.Name, b.Name))
	})
}

// SEMANTICS.md: topology — trafficDistribution PreferClose: the real
// EndpointSlice controller hints each endpoint for its own zone (one node
// per zone here), and a client uses the endpoints of its zone.
func TestSemantics_Topology_PreferClose(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	labels := map[string]string{"app": "backend"}
	byNode := map[string]string{}
	var clients []corev1.Pod
	for i, n := range nodes[:3] {
		p := echoPod(t, ns, fmt.Sprintf("backend-%d", i), n, labels, 2, containerPort("http", corev1.ProtocolTCP, 8080))
		byNode[n] = p.Name
		clients = append(clients, echoPod(t, ns, fmt.Sprintf("client-%d", i), n, nil, 2, containerPort("http", corev1.ProtocolTCP, 8080)))
	}
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "close"},
		Spec: corev1.ServiceSpec{
			TrafficDistribution: ptr.To(corev1.ServiceTrafficDistributionPreferClose),
			Selector:            labels,
			Ports:               []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "close", 3)
	retry.Eventually(t, time.Minute, "zone hints on every endpoint", func() error {
		for _, s := range slices(t, ns, "close") {
			for _, e := range s.Endpoints {
				if e.Hints == nil || len(e.Hints.ForZones) == 0 {
					return fmt.Errorf("endpoint %v has no zone hints", e.Addresses)
				}
				if e.Zone == nil || e.Hints.ForZones[0].Name != *e.Zone {
					return fmt.Errorf("endpoint %v in zone %v hinted for %v", e.Addresses, ptr.Deref(e.Zone, ""), e.Hints.ForZones)
				}
			}
		}
		return nil
	})
	target := addr(svc.Spec.ClusterIP, 80)
	for i, n := range nodes[:3] {
		t.Run("client on "+n+" (zone "+nodeOf(t, n).Zone+")", func(t *testing.T) {
			waitOnly(t, fromPod(t, &clients[i]), "tcp", target, set(byNode[n]), 20)
		})
	}
	t.Run("all endpoints once the hints go", func(t *testing.T) {
		updateService(t, ns, "close", func(s *corev1.Service) { s.Spec.TrafficDistribution = nil })
		waitAnswers(t, fromPod(t, &clients[0]), "tcp", target, set(byNode[nodes[0]], byNode[nodes[1]], byNode[nodes[2]]))
	})
}

// SEMANTICS.md: topology — EndpointSlice hints forNodes and forZones:
// prefer endpoints hinted for this node, then this zone, but only when
// every ready endpoint has hints and at least one matches; otherwise all.
// Hand-made slices give hints the controller would not.
func TestSemantics_Topology_HintsAllOrNothing(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	a := echoPod(t, ns, "a", nodes[0], map[string]string{"role": "manual"}, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	b := echoPod(t, ns, "b", nodes[1], map[string]string{"role": "manual"}, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	c0 := echoPod(t, ns, "client-0", nodes[0], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	c1 := echoPod(t, ns, "client-1", nodes[1], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hinted"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{tcpPort("http", 80, 8080)}},
	})
	zone := func(n string) string { return nodeOf(t, n).Zone }
	ea, eb := manualEndpoint(a, true), manualEndpoint(b, true)
	ea.Zone, eb.Zone = ptr.To(zone(nodes[0])), ptr.To(zone(nodes[1]))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "hinted-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "hinted", discoveryv1.LabelManagedBy: "e2e.doorman.local"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	ctx := context.Background()
	cs := prov.Client().DiscoveryV1().EndpointSlices(ns)
	apply := func(t *testing.T, ea, eb discoveryv1.Endpoint) {
		t.Helper()
		slice.Endpoints = []discoveryv1.Endpoint{ea, eb}
		var err error
		if slice.ResourceVersion == "" {
			slice, err = cs.Create(ctx, slice, metav1.CreateOptions{})
		} else {
			slice, err = cs.Update(ctx, slice, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	hints := func(nodes []string, zones ...string) *discoveryv1.EndpointHints {
		h := &discoveryv1.EndpointHints{}
		for _, n := range nodes {
			h.ForNodes = append(h.ForNodes, discoveryv1.ForNode{Name: n})
		}
		for _, z := range zones {
			h.ForZones = append(h.ForZones, discoveryv1.ForZone{Name: z})
		}
		return h
	}
	target := addr(svc.Spec.ClusterIP, 80)
	from0, from1 := fromPod(t, &c0), fromPod(t, &c1)
	both := set(a.Name, b.Name)

	t.Run("one endpoint without hints: all", func(t *testing.T) {
		ea.Hints, eb.Hints = hints(nil, zone(nodes[0])), nil
		apply(t, ea, eb)
		waitAnswers(t, from0, "tcp", target, both)
	})
	t.Run("zone hints: own zone", func(t *testing.T) {
		ea.Hints, eb.Hints = hints(nil, zone(nodes[0])), hints(nil, zone(nodes[1]))
		apply(t, ea, eb)
		waitOnly(t, from0, "tcp", target, set(a.Name), 20)
		waitOnly(t, from1, "tcp", target, set(b.Name), 20)
	})
	t.Run("node hints before zone hints", func(t *testing.T) {
		// Both hinted for the client's zone; each for its own node.
		ea.Hints = hints([]string{nodes[0]}, zone(nodes[1]))
		eb.Hints = hints([]string{nodes[1]}, zone(nodes[1]))
		apply(t, ea, eb)
		waitOnly(t, from1, "tcp", target, set(b.Name), 20)
	})
	t.Run("node hints on some endpoints only: zone hints decide", func(t *testing.T) {
		// As upstream: node hints count only when every ready endpoint
		// has them; a lacks them, so the zone hints (both for the
		// client's zone) decide.
		ea.Hints = hints(nil, zone(nodes[1]))
		eb.Hints = hints([]string{nodes[1]}, zone(nodes[1]))
		apply(t, ea, eb)
		waitAnswers(t, from1, "tcp", target, both)
	})
	t.Run("no hint matches this node or zone: all", func(t *testing.T) {
		ea.Hints, eb.Hints = hints(nil, zone(nodes[2])), hints(nil, zone(nodes[2]))
		apply(t, ea, eb)
		waitAnswers(t, from0, "tcp", target, both)
	})
}
