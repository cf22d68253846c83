//go:build e2e

package suite

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Addresses on the way": Pod → ClusterIP → Pod — the
// backend sees the client Pod's own IP (no SNAT), on the same node and on
// another.
func TestSemantics_SourcePodIP_Preserved(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	client := echoPod(t, ns, "client", nodes[0], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	c := fromPod(t, &client)
	for i, where := range []string{"same node", "other node"} {
		name := fmt.Sprintf("backend-%d", i)
		p := echoPod(t, ns, name, nodes[i], map[string]string{"app": name}, 2,
			containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
		svc := service(t, ns, name, name, corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
		for _, proto := range []string{"tcp", "udp"} {
			port := map[string]int32{"tcp": 80, "udp": 53}[proto]
			t.Run(where+" over "+proto, func(t *testing.T) {
				target := addr(svc.Spec.ClusterIP, port)
				waitAnswers(t, c, proto, target, set(p.Name))
				got, err := c.ask(proto, target, "clientip")
				if err != nil {
					t.Fatal(err)
				}
				if h := clientHost(t, got); h != client.Status.PodIP {
					t.Errorf("backend saw %s, want the client Pod's own IP %s", h, client.Status.PodIP)
				}
			})
		}
	}
}

// SEMANTICS.md: hairpin — a Pod reaching itself through its Service
// works (masqueraded, so its reply goes back through the node).
func TestSemantics_Hairpin(t *testing.T) {
	track(t)
	ns := namespace(t)
	self := echoPod(t, ns, "self", "", map[string]string{"app": "self"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	svc := service(t, ns, "self", "self", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	c := fromPod(t, &self)
	for _, proto := range []string{"tcp", "udp"} {
		port := map[string]int32{"tcp": 80, "udp": 53}[proto]
		t.Run(proto, func(t *testing.T) {
			target := addr(svc.Spec.ClusterIP, port)
			waitAnswers(t, c, proto, target, set(self.Name))
			got, err := c.ask(proto, target, "clientip")
			if err != nil {
				t.Fatal(err)
			}
			if h := clientHost(t, got); h == self.Status.PodIP {
				t.Errorf("the Pod saw its own address %s as the client, want it masqueraded", h)
			}
		})
	}
}

// SEMANTICS.md: off-cluster source to NodePort with Cluster policy —
// masqueraded: the backend sees an address of the receiving node, never
// the client's, whether the backend is on that node or another.
func TestSemantics_OffClusterNodePort_Masqueraded(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	ext := fromExternal(t)
	for _, n := range prov.Nodes()[:2] {
		// The receiving node's addresses: its node IP and its end of the
		// Pods' links (<Pod CIDR>.1: the netns cluster's point-to-point
		// links, the gateway a bridge or ptp CNI gives its Pods on kind).
		_, podNet, err := net.ParseCIDR(n.PodCIDR)
		if err != nil {
			t.Fatal(err)
		}
		gw := podNet.IP.To4()
		gw[3] = 1
		nodeAddrs := set(n.IP, gw.String())
		for i, proto := range []string{"tcp", "udp"} {
			target := addr(n.IP, svc.Spec.Ports[i].NodePort)
			t.Run(fmt.Sprintf("%s via %s", proto, n.Name), func(t *testing.T) {
				waitAnswers(t, ext, proto, target, set(backend.Name))
				got, err := ext.ask(proto, target, "clientip")
				if err != nil {
					t.Fatal(err)
				}
				if h := clientHost(t, got); !nodeAddrs[h] {
					t.Errorf("backend saw %s, want an address of %s %v (masqueraded)", h, n.Name, keys(nodeAddrs))
				}
			})
		}
	}
}

// waitFlowAnswer polls a flow until it is answered by a name in want.
func waitFlowAnswer(t *testing.T, f *flow, want map[string]bool, within time.Duration) string {
	t.Helper()
	var got string
	retry.Eventually(t, within, fmt.Sprintf("%s answered by one of %v", f.what, keys(want)), func() error {
		var err error
		got, err = f.ask("hostname")
		if err != nil {
			return err
		}
		if !want[got] {
			return fmt.Errorf("answered by %s", got)
		}
		return nil
	})
	return got
}

// SEMANTICS.md: UDP, endpoint removed — stale conntrack entries toward it
// are deleted so clients move to a live endpoint. The removed endpoint
// stays alive (only not ready), so a stale entry would keep answering.
func TestSemantics_UDPConntrack_EndpointRemoved(t *testing.T) {
	track(t)
	ns := namespace(t)
	labels := map[string]string{"app": "backend"}
	a := echoPod(t, ns, "a", "", labels, 2, containerPort("dns", corev1.ProtocolUDP, 8081))
	client := echoPod(t, ns, "client", "", nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, udpPort("dns", 53, 8081))
	c := fromPod(t, &client)
	target := addr(svc.Spec.ClusterIP, 53)
	waitAnswers(t, c, "udp", target, set(a.Name))
	flow := c.openFlow(t, "udp", target)
	waitFlowAnswer(t, flow, set(a.Name), 10*time.Second)

	b := echoPod(t, ns, "b", "", labels, 2, containerPort("dns", corev1.ProtocolUDP, 8081))
	readyEndpoints(t, ns, "backend", 2)
	waitAnswers(t, c, "udp", target, set(a.Name, b.Name))
	if got, err := flow.ask("hostname"); err != nil || got != a.Name {
		t.Fatalf("established UDP flow after b joined: %q, %v; want still %s", got, err, a.Name)
	}
	if err := prov.SetPodReady(context.Background(), ns, a.Name, false); err != nil {
		t.Fatal(err)
	}
	waitEndpoint(t, ns, "backend", a.Status.PodIP, false, false, false)
	start := time.Now()
	waitFlowAnswer(t, flow, set(b.Name), 30*time.Second)
	t.Logf("the UDP flow moved to %s %s after a left the slice", b.Name, time.Since(start).Round(time.Millisecond))
}

// SEMANTICS.md: conntrack — established flows keep their backend while
// the endpoint lives, however the endpoint set changes around them.
func TestSemantics_Conntrack_EstablishedFlowsKeepBackend(t *testing.T) {
	track(t)
	ns := namespace(t)
	labels := map[string]string{"app": "backend"}
	ports := []corev1.ContainerPort{containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081)}
	first := echoPod(t, ns, "first", "", labels, 2, ports...)
	client := echoPod(t, ns, "client", "", nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	c := fromPod(t, &client)
	tcpTarget, udpTarget := addr(svc.Spec.ClusterIP, 80), addr(svc.Spec.ClusterIP, 53)
	waitAnswers(t, c, "tcp", tcpTarget, set(first.Name))
	waitAnswers(t, c, "udp", udpTarget, set(first.Name))

	sess := c.openFlow(t, "tcp", tcpTarget)
	flow := c.openFlow(t, "udp", udpTarget)
	waitFlowAnswer(t, flow, set(first.Name), 10*time.Second)

	// The set grows to four: new connections spread, the old flows stay.
	all := set(first.Name)
	for i := range 3 {
		p := echoPod(t, ns, fmt.Sprintf("more-%d", i), "", labels, 2, ports...)
		all[p.Name] = true
	}
	waitAnswers(t, c, "tcp", tcpTarget, all)
	waitAnswers(t, c, "udp", udpTarget, all)
	for i := range 20 {
		got, err := sess.ask("hostname")
		if err != nil {
			t.Fatalf("TCP session request %d: %v", i, err)
		}
		if got != first.Name {
			t.Fatalf("TCP session request %d answered by %s, want its backend %s", i, got, first.Name)
		}
		got, err = flow.ask("hostname")
		if err != nil {
			t.Fatalf("UDP flow datagram %d: %v", i, err)
		}
		if got != first.Name {
			t.Fatalf("UDP flow datagram %d answered by %s, want its backend %s", i, got, first.Name)
		}
	}
}
