//go:build e2e

package suite

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sretry "k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Reaching a Service": ClusterIP — from Pods and from the
// node itself (locally generated traffic too).
func TestSemantics_ClusterIP_FromPodsAndNode(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP,
		tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	readyEndpoints(t, ns, "backend", 2)
	names := podNames(backends)
	for _, proto := range []string{"tcp", "udp"} {
		port := int32(80)
		if proto == "udp" {
			port = 53
		}
		target := addr(svc.Spec.ClusterIP, port)
		t.Run("from a Pod over "+proto, func(t *testing.T) {
			waitAnswers(t, fromPod(t, &clients[0]), proto, target, names)
		})
		for _, n := range nodeNames(t, 1) {
			t.Run(fmt.Sprintf("from %s itself over %s", n, proto), func(t *testing.T) {
				waitAnswers(t, fromNode(t, n), proto, target, names)
			})
		}
	}
}

// SEMANTICS.md: NodePort — <any node address>:nodePort on every node,
// whether or not it runs a backend; the default set of addresses is the
// node's own.
func TestSemantics_NodePort_EveryNode(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	// One backend, on the first node: the others answer without one.
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	client := echoPod(t, ns, "client", nodes[1], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort,
		tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	want := set(backend.Name)
	for _, p := range svc.Spec.Ports {
		proto := "tcp"
		if p.Protocol == corev1.ProtocolUDP {
			proto = "udp"
		}
		for _, n := range prov.Nodes() {
			target := addr(n.IP, p.NodePort)
			t.Run(fmt.Sprintf("%s via %s from outside", proto, n.Name), func(t *testing.T) {
				waitAnswers(t, fromExternal(t), proto, target, want)
			})
			t.Run(fmt.Sprintf("%s via %s from a Pod", proto, n.Name), func(t *testing.T) {
				waitAnswers(t, fromPod(t, &client), proto, target, want)
			})
			t.Run(fmt.Sprintf("%s via %s from that node", proto, n.Name), func(t *testing.T) {
				waitAnswers(t, fromNode(t, n.Name), proto, target, want)
			})
		}
	}
	t.Run("not on other addresses", func(t *testing.T) {
		doormanOnly(t)
		// The node's Pod-side gateway address is not one of its node
		// addresses: the NodePort must not answer there.
		ok, err := kernelHasElement(nodes[0], "nodeport-ips", nodeOf(t, nodes[0]).IP)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("nodeport-ips on %s lacks the node's own address %s", nodes[0], nodeOf(t, nodes[0]).IP)
		}
		els, err := kernelElements(nodes[0], "nodeport-ips")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range els {
			if e != nodeOf(t, nodes[0]).IP {
				t.Errorf("nodeport-ips on %s holds %s, want only the node's own address", nodes[0], e)
			}
		}
	})
}

// SEMANTICS.md: LoadBalancer — status.loadBalancer.ingress[].ip handled
// like an externalIP; entries with ipMode: Proxy are not programmed.
func TestSemantics_LoadBalancer_IngressIP(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	client := echoPod(t, ns, "client", nodes[1], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	service(t, ns, "lb", "backend", corev1.ServiceTypeLoadBalancer, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	// One status with both kinds of entry, so once the VIP answers the
	// Proxy entry has reached the nodes too.
	vip, proxied := externalAddr(), externalAddr()
	ctx := context.Background()
	err := k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		svc, err := prov.Client().CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
			{IP: vip, IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)},
			{IP: proxied, IPMode: ptr.To(corev1.LoadBalancerIPModeProxy)},
		}
		_, err = prov.Client().CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("load balancer status: %v", err)
	}
	for _, ip := range []string{vip, proxied} {
		// The load balancer sends to the node without a backend.
		if err := prov.RouteFromExternal(ip+"/32", nodes[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := set(backend.Name)
	for _, proto := range []string{"tcp", "udp"} {
		port := int32(80)
		if proto == "udp" {
			port = 53
		}
		t.Run("VIP from outside over "+proto, func(t *testing.T) {
			waitAnswers(t, fromExternal(t), proto, addr(vip, port), want)
		})
		t.Run("VIP from a Pod over "+proto, func(t *testing.T) {
			waitAnswers(t, fromPod(t, &client), proto, addr(vip, port), want)
		})
	}
	t.Run("ipMode Proxy not programmed", func(t *testing.T) {
		doormanOnly(t)
		for _, n := range prov.Nodes() {
			retry.Eventually(t, 30*time.Second, "VIP "+vip+" in service-ips on "+n.Name, func() error {
				ok, err := kernelHasElement(n.Name, "service-ips", vip+" ")
				if err == nil && !ok {
					err = errors.New("not there")
				}
				return err
			})
			ok, err := kernelHasElement(n.Name, "service-ips", proxied+" ")
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				t.Errorf("service-ips on %s holds ipMode Proxy address %s", n.Name, proxied)
			}
		}
		if got, err := fromExternal(t).ask("tcp", addr(proxied, 80), "hostname"); err == nil {
			t.Errorf("ipMode Proxy address %s answered by %q, want no answer (the load balancer proxies, not the node)", proxied, got)
		}
	})
}

// SEMANTICS.md: externalIPs — programmed like LoadBalancer ingress IPs.
func TestSemantics_ExternalIPs(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	eip := externalAddr()
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "eip"},
		Spec: corev1.ServiceSpec{
			Selector:    map[string]string{"app": "backend"},
			ExternalIPs: []string{eip},
			Ports:       []corev1.ServicePort{tcpPort("http", 80, 8080), udpPort("dns", 53, 8081)},
		},
	})
	if err := prov.RouteFromExternal(eip+"/32", nodes[1]); err != nil {
		t.Fatal(err)
	}
	want := set(backend.Name)
	t.Run("tcp", func(t *testing.T) { waitAnswers(t, fromExternal(t), "tcp", addr(eip, 80), want) })
	t.Run("udp", func(t *testing.T) { waitAnswers(t, fromExternal(t), "udp", addr(eip, 53), want) })
	t.Run("other port rejected", func(t *testing.T) {
		// Only the Service's ports: port 81 of the external IP is nothing
		// doorman forwards.
		if got, err := fromExternal(t).ask("tcp", addr(eip, 81), "hostname"); err == nil {
			t.Errorf("port 81 of %s answered by %q", eip, got)
		}
	})
}

// Upstream checklist: externalIP not assigned to a node — Pods and nodes
// reach a Service through an externalIP no node holds.
func TestSemantics_ExternalIP_NotAssignedToNode(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	eip := externalAddr()
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "eip"},
		Spec: corev1.ServiceSpec{
			Selector:    map[string]string{"app": "backend"},
			ExternalIPs: []string{eip},
			Ports:       []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "eip", 2)
	names := podNames(backends)
	t.Run("from a Pod", func(t *testing.T) { waitAnswers(t, fromPod(t, &clients[0]), "tcp", addr(eip, 80), names) })
	for _, n := range nodeNames(t, 1) {
		t.Run("from "+n, func(t *testing.T) { waitAnswers(t, fromNode(t, n), "tcp", addr(eip, 80), names) })
	}
}

// SEMANTICS.md: loadBalancerSourceRanges — traffic to LB IPs from other
// sources dropped.
func TestSemantics_LoadBalancerSourceRanges(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 1)
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	vip := externalAddr()
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fw"},
		Spec: corev1.ServiceSpec{
			Type:                     corev1.ServiceTypeLoadBalancer,
			Selector:                 map[string]string{"app": "backend"},
			LoadBalancerSourceRanges: []string{clientRange(t)}, // holds the external client
			Ports:                    []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	if err := setLoadBalancerIngress(context.Background(), ns, "fw", vip); err != nil {
		t.Fatal(err)
	}
	if err := prov.RouteFromExternal(vip+"/32", nodes[0]); err != nil {
		t.Fatal(err)
	}
	ext := fromExternal(t)
	want := set(backend.Name)
	target := addr(vip, 80)
	waitAnswers(t, ext, "tcp", target, want)

	updateService(t, ns, "fw", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"} })
	waitFails(t, ext, "tcp", target, "dropped once the client is outside the ranges", func(err error) error {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("refused, want dropped: %w", err)
		}
		return nil
	})
	t.Run("NodePort not filtered", func(t *testing.T) {
		// Source ranges guard the load balancer's addresses only.
		waitAnswers(t, ext, "tcp", addr(nodeOf(t, nodes[0]).IP, svc.Spec.Ports[0].NodePort), want)
	})
	t.Run("allowed again", func(t *testing.T) {
		updateService(t, ns, "fw", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = nil })
		waitAnswers(t, ext, "tcp", target, want)
	})
}

// SEMANTICS.md: a port of a ClusterIP that the Service does not have —
// rejected.
func TestSemantics_UnknownPort_Rejected(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 1,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("alt", corev1.ProtocolTCP, 81))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 1)
	c := fromPod(t, &clients[0])
	waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 80), podNames(backends))
	// Port 81: the backend listens on 81 too, but the Service has no port
	// 81, so the connection is refused at once rather than left hanging.
	target := addr(svc.Spec.ClusterIP, 81)
	t.Run("from a Pod", func(t *testing.T) { waitFails(t, c, "tcp", target, "refused at once", refusedAtOnce(c, "tcp", target)) })
	t.Run("from a node", func(t *testing.T) {
		n := fromNode(t, nodeNames(t, 1)[0])
		waitFails(t, n, "tcp", target, "refused at once", refusedAtOnce(n, "tcp", target))
	})
	t.Run("udp", func(t *testing.T) {
		target := addr(svc.Spec.ClusterIP, 53)
		waitFails(t, c, "udp", target, "refused at once", refusedAtOnce(c, "udp", target))
	})
}

// SEMANTICS.md: Service with no usable endpoints — new connections
// rejected at once (TCP RST / ICMP unreachable), not black-holed.
func TestSemantics_NoEndpoints_RejectedAtOnce(t *testing.T) {
	track(t)
	ns := namespace(t)
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "empty", "nothing", corev1.ServiceTypeNodePort, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	c := fromPod(t, &clients[0])
	for _, tc := range []struct {
		name string
		from asker
		port int32
		via  string
	}{
		{"tcp ClusterIP from a Pod", c, 80, svc.Spec.ClusterIP},
		{"udp ClusterIP from a Pod", c, 53, svc.Spec.ClusterIP},
		{"tcp ClusterIP from a node", fromNode(t, nodeNames(t, 1)[0]), 80, svc.Spec.ClusterIP},
		{"tcp NodePort from outside", fromExternal(t), svc.Spec.Ports[0].NodePort, prov.Nodes()[0].IP},
		{"udp NodePort from outside", fromExternal(t), svc.Spec.Ports[1].NodePort, prov.Nodes()[0].IP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proto := "tcp"
			if tc.name[:3] == "udp" {
				proto = "udp"
			}
			target := addr(tc.via, tc.port)
			waitFails(t, tc.from, proto, target, "refused at once", refusedAtOnce(tc.from, proto, target))
		})
	}
	t.Run("served once a backend comes", func(t *testing.T) {
		backends := echoDeployment(t, ns, "nothing", 1,
			containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
		waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 80), podNames(backends))
		waitAnswers(t, c, "udp", addr(svc.Spec.ClusterIP, 53), podNames(backends))
	})
}

// SEMANTICS.md: NodePort — which node addresses count is configurable.
// Each case starts a cluster of its own (two nodes, a few seconds to
// start) whose control plane runs with --nodeport-addresses.
func TestSemantics_NodePort_ConfigurableAddresses(t *testing.T) {
	track(t)
	doormanOnly(t)
	netnsCluster(t, "starts a second cluster whose control plane runs with --nodeport-addresses; a kind cluster's control plane is the one deploy/ installed")
	if doormanBinDir == "" {
		skipAs(t, "not applicable with -e2e.proxy="+*flagProxy, "no doorman binaries to start a second cluster from")
	}
	// CIDRs naming only the second node's address: the NodePort answers
	// there and nowhere else.
	t.Run("CIDRs", func(t *testing.T) {
		np := nodePortCluster(t, "--nodeport-addresses=10.250.0.12/32")
		nodes := np.c.Nodes()
		waitAnswers(t, np.ext, "tcp", addr(nodes[1].IP, np.port), set(np.pod))
		// The ClusterIP is not affected by the flag; once the first node
		// serves it, that node has programmed the Service.
		n0dial, err := np.c.DialFromNode(nodes[0].Name)
		if err != nil {
			t.Fatal(err)
		}
		n0 := asker{where: "node " + nodes[0].Name, from: provider.DialAsker("node "+nodes[0].Name, n0dial)}
		waitAnswers(t, n0, "tcp", addr(np.clusterIP, 80), set(np.pod))
		// The first node's address is outside --nodeport-addresses: nothing
		// forwards there (the node has no listener, so its kernel resets).
		if got, err := np.ext.ask("tcp", addr(nodes[0].IP, np.port), "hostname"); err == nil {
			t.Errorf("NodePort on %s (%s) answered by %q, want nothing outside --nodeport-addresses", nodes[0].Name, nodes[0].IP, got)
		}
	})
	// primary: per family the Node's first InternalIP (else its first
	// ExternalIP), as kube-proxy's. The first node gets two more addresses
	// on its interface, listed as a new first InternalIP and an
	// ExternalIP: the NodePort moves to the new first InternalIP and
	// answers on neither of the others.
	t.Run("primary", func(t *testing.T) {
		np := nodePortCluster(t, "--nodeport-addresses=primary")
		nodes := np.c.Nodes()
		for _, n := range nodes {
			waitAnswers(t, np.ext, "tcp", addr(n.IP, np.port), set(np.pod))
		}
		first, external := "10.250.0.60", "10.250.0.61"
		listNodeAddresses(t, np.c, nodes[0],
			corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: first},
			corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: external})
		waitAnswers(t, np.ext, "tcp", addr(first, np.port), set(np.pod))
		for _, a := range []string{nodes[0].IP, external} {
			target := addr(a, np.port)
			waitFails(t, np.ext, "tcp", target, "refused: not the node's primary address", refusedAtOnce(np.ext, "tcp", target))
		}
		waitAnswers(t, np.ext, "tcp", addr(nodes[1].IP, np.port), set(np.pod))
	})
}

// nodePortTarget is a NodePort Service with one backend on a cluster of
// its own.
type nodePortTarget struct {
	c         *cluster.Cluster
	ext       asker
	pod       string
	clusterIP string
	port      int32
}

// nodePortCluster starts a two-node cluster whose control plane runs with
// args, and a NodePort Service with one backend on it.
func nodePortCluster(t *testing.T, args ...string) nodePortTarget {
	t.Helper()
	ctx := context.Background()
	c, err := cluster.Start(ctx, cluster.Config{
		Nodes:            2,
		K8sBinDir:        provider.DefaultK8sBinDir(),
		DoormanBinDir:    doormanBinDir,
		ControlPlaneArgs: args,
	})
	if err != nil {
		t.Fatalf("start a cluster with %v: %v", args, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	cs := c.Client()
	retry.Eventually(t, 30*time.Second, "default service account", func() error {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	labels := map[string]string{"app": "backend"}
	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "backend", Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "echo", Image: "doorman.local/echo",
				Ports: []corev1.ContainerPort{containerPort("http", corev1.ProtocolTCP, 8080)}}},
			TerminationGracePeriodSeconds: ptr.To[int64](1),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "backend"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: labels,
			Ports:    []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return nodePortTarget{
		c:         c,
		ext:       asker{where: "the external client", from: provider.DialAsker("the external client", c.DialFromExternal())},
		pod:       pod.Name,
		clusterIP: svc.Spec.ClusterIP,
		port:      svc.Spec.Ports[0].NodePort,
	}
}

// listNodeAddresses assigns each IPv4 address to the node's interface and
// lists them first in its Node's status.addresses, in the order given.
func listNodeAddresses(t *testing.T, c *cluster.Cluster, n cluster.Node, addrs ...corev1.NodeAddress) {
	t.Helper()
	for _, a := range addrs {
		if out, err := exec.Command("ip", "-n", n.NetNS, "addr", "add", a.Address+"/24", "dev", "eth0").CombinedOutput(); err != nil {
			t.Fatalf("add %s to %s: %v: %s", a.Address, n.Name, err, out)
		}
	}
	nodes := c.Client().CoreV1().Nodes()
	err := k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		node, err := nodes.Get(context.Background(), n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status.Addresses = append(append([]corev1.NodeAddress(nil), addrs...), node.Status.Addresses...)
		_, err = nodes.UpdateStatus(context.Background(), node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("list addresses of node %s: %v", n.Name, err)
	}
}

// clientRange is the /29 holding the external client, for
// loadBalancerSourceRanges: no node is in it on either provider.
func clientRange(t *testing.T) string {
	t.Helper()
	ip, err := netip.ParseAddr(prov.ExternalClientIP())
	if err != nil {
		t.Fatalf("external client address: %v", err)
	}
	p := netip.PrefixFrom(ip, 29).Masked()
	for _, n := range prov.Nodes() {
		if a, err := netip.ParseAddr(n.IP); err == nil && p.Contains(a) {
			t.Fatalf("node %s (%s) is in the external client's range %s", n.Name, n.IP, p)
		}
	}
	return p.String()
}

// setLoadBalancerIngress writes a LoadBalancer Service's
// status.loadBalancer.ingress (ipMode unset: VIP), as a load-balancer
// controller would.
func setLoadBalancerIngress(ctx context.Context, ns, name string, ips ...string) error {
	return k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		svc, err := prov.Client().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = nil
		for _, ip := range ips {
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		if _, err := prov.Client().CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("service %s/%s load balancer status: %w", ns, name, err)
		}
		return nil
	})
}
