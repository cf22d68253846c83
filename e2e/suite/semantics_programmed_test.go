//go:build e2e

package suite

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Which Services are programmed": type ClusterIP with a
// selector — ClusterIP:port → one Ready endpoint's IP:targetPort.
func TestSemantics_ClusterIPWithSelector_ToReadyEndpoint(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	// Port 80 → targetPort 8080: only the target port has a listener, so an
	// answer proves the port was translated too.
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 2)
	a := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	waitAnswers(t, a, "tcp", target, podNames(backends))
	// A not-ready Pod that matches the selector is not an endpoint to use.
	if err := prov.SetPodReady(context.Background(), ns, backends[0].Name, false); err != nil {
		t.Fatal(err)
	}
	waitOnly(t, a, "tcp", target, set(backends[1].Name), 20)
}

// SEMANTICS.md: headless (clusterIP: None) — nothing programmed.
func TestSemantics_Headless_NotProgrammed(t *testing.T) {
	track(t)
	ns := namespace(t)
	echoDeployment(t, ns, "backend", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "headless"},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "backend"},
			Ports:     []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "headless", 1)
	assertNotProgrammedAfterWitness(t, ns, "headless")
}

// SEMANTICS.md: type ExternalName — nothing programmed.
func TestSemantics_ExternalName_NotProgrammed(t *testing.T) {
	track(t)
	ns := namespace(t)
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "cname"},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "backend.example.com",
			Ports:        []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	assertNotProgrammedAfterWitness(t, ns, "cname")
}

// assertNotProgrammedAfterWitness creates a plain ClusterIP Service after
// the one under test and waits until every agent holds it: the control
// plane has processed the earlier Service by then, so its absence from every
// agent's view is a decision, not a delay.
func assertNotProgrammedAfterWitness(t *testing.T, ns, name string) {
	t.Helper()
	doormanOnly(t)
	witness := service(t, ns, "witness", "nothing", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	waitAgentsHold(t, ns, witness.Name)
	for _, n := range prov.Nodes() {
		ks, err := agentKeys(n.Name, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(ks) != 0 {
			t.Errorf("agent on %s holds %v for %s/%s, want nothing", n.Name, ks, ns, name)
		}
	}
}

// SEMANTICS.md: Service without selector + hand-made EndpointSlices —
// programmed from those slices.
func TestSemantics_SelectorlessWithManualSlices(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	// Pods the Service does not select: only the hand-made slice points at them.
	a := echoPod(t, ns, "manual-a", nodes[0], map[string]string{"role": "manual"}, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	b := echoPod(t, ns, "manual-b", nodes[1], map[string]string{"role": "manual"}, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	client := echoPod(t, ns, "client", "", nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "manual"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{tcpPort("http", 80, 8080)}},
	})
	slice := manualSlice(manualEndpoint(a, true), manualEndpoint(b, true))
	ctx := context.Background()
	created, err := prov.Client().DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := fromPod(t, &client)
	target := addr(svc.Spec.ClusterIP, 80)
	waitAnswers(t, c, "tcp", target, set(a.Name, b.Name))

	// The slice is the only truth: mark b not ready in it.
	created.Endpoints[1].Conditions.Ready = ptr.To(false)
	if _, err := prov.Client().DiscoveryV1().EndpointSlices(ns).Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitOnly(t, c, "tcp", target, set(a.Name), 20)
}

// manualSlice is the hand-made EndpointSlice manual-1 of Service "manual"
// (port http, 8080/TCP) listing eps.
func manualSlice(eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "manual-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "manual", discoveryv1.LabelManagedBy: "e2e.doorman.local"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
		Endpoints:   eps,
	}
}

func manualEndpoint(p corev1.Pod, ready bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{p.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
		NodeName:   ptr.To(p.Spec.NodeName),
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
}

// SEMANTICS.md: label service.kubernetes.io/service-proxy-name set —
// ignored (another proxy owns it). Removing the label hands it to doorman.
func TestSemantics_ServiceProxyNameLabel_Ignored(t *testing.T) {
	track(t)
	ignoredByLabel(t, "service.kubernetes.io/service-proxy-name", "another-proxy")
}

// SEMANTICS.md: label service.kubernetes.io/headless — ignored.
func TestSemantics_HeadlessLabel_Ignored(t *testing.T) {
	track(t)
	ignoredByLabel(t, "service.kubernetes.io/headless", "")
}

func ignoredByLabel(t *testing.T, label, value string) {
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "labelled", Labels: map[string]string{label: value}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "backend"},
			Ports:    []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "labelled", 1)
	assertNotProgrammedAfterWitness(t, ns, "labelled")
	c := fromPod(t, &clients[0])
	target := addr(svc.Spec.ClusterIP, 80)
	if got, err := c.ask("tcp", target, "hostname"); err == nil {
		t.Errorf("%s answered by %q while labelled %s, want no answer", target, got, label)
	}
	// The same Service without the label is doorman's.
	updateService(t, ns, "labelled", func(s *corev1.Service) { delete(s.Labels, label) })
	waitAnswers(t, c, "tcp", target, podNames(backends))
	// And labelled again, it is dropped again.
	updateService(t, ns, "labelled", func(s *corev1.Service) { s.Labels = map[string]string{label: value} })
	waitFails(t, c, "tcp", target, "not answering once labelled again", anyError)
}

// SEMANTICS.md: several ports, named targetPort — each port separately;
// the number comes from each EndpointSlice's ports, so Pods may differ.
func TestSemantics_MultiPort_NamedTargetPortsDifferPerPod(t *testing.T) {
	track(t)
	ns := namespace(t)
	labels := map[string]string{"app": "multi"}
	// Two Pods of one Service whose named ports have different numbers;
	// each serves only its own numbers.
	p1 := echoPod(t, ns, "multi-1", "", labels, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8053))
	p2 := echoPod(t, ns, "multi-2", "", labels, 2,
		containerPort("http", corev1.ProtocolTCP, 9080), containerPort("dns", corev1.ProtocolUDP, 9053))
	client := echoPod(t, ns, "client", "", nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "multi"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "web", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromString("dns")},
			},
		},
	})
	readyEndpoints(t, ns, "multi", 2)
	c := fromPod(t, &client)
	both := set(p1.Name, p2.Name)
	t.Run("tcp port web", func(t *testing.T) { waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 80), both) })
	t.Run("udp port dns", func(t *testing.T) { waitAnswers(t, c, "udp", addr(svc.Spec.ClusterIP, 53), both) })
	t.Run("ports kept apart", func(t *testing.T) {
		// Port 80 over UDP and 53 over TCP are not ports of the Service.
		for _, tc := range []struct {
			proto string
			port  int32
		}{{"udp", 80}, {"tcp", 53}} {
			if got, err := c.ask(tc.proto, addr(svc.Spec.ClusterIP, tc.port), "hostname"); err == nil {
				t.Errorf("%s %d answered by %q, want no answer", tc.proto, tc.port, got)
			}
		}
	})
}

// SEMANTICS.md: TCP, UDP — the same port number on different protocols
// kept apart. The TCP port leads to one Pod, the UDP port to another.
func TestSemantics_SamePort_TCPandUDPApart(t *testing.T) {
	track(t)
	ns := namespace(t)
	labels := map[string]string{"app": "both"}
	// Named targetPorts: a Pod lacking a port's name is not an endpoint of
	// that port, so each protocol has exactly one backend.
	tcpPod := echoPod(t, ns, "tcp-only", "", labels, 2, containerPort("t", corev1.ProtocolTCP, 8080))
	udpPod := echoPod(t, ns, "udp-only", "", labels, 2, containerPort("u", corev1.ProtocolUDP, 8080))
	client := echoPod(t, ns, "client", "", nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "both"},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "t", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("t")},
				{Name: "u", Protocol: corev1.ProtocolUDP, Port: 80, TargetPort: intstr.FromString("u")},
			},
		},
	})
	c := fromPod(t, &client)
	target := addr(svc.Spec.ClusterIP, 80)
	waitOnly(t, c, "tcp", target, set(tcpPod.Name), 10)
	waitOnly(t, c, "udp", target, set(udpPod.Name), 10)
}

// SEMANTICS.md: SCTP. The kernel of this machine has no SCTP sockets, so
// no association can be made; but nftables, conntrack and NAT handle SCTP
// packets without them. The test checks that every agent's kernel holds
// the Service's elements, and on the netns cluster sends SCTP INIT chunks
// from raw sockets: to the ClusterIP from a Pod and to the NodePort from
// outside, each must arrive at one of the backends, translated to its
// Pod IP and target port, and the backends must share them.
func TestSemantics_SCTP(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("sctp", corev1.ProtocolSCTP, 9999))
	client := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))[0]
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "sctp"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": "backend"},
			Ports:    []corev1.ServicePort{{Name: "sctp", Protocol: corev1.ProtocolSCTP, Port: 9999, TargetPort: intstr.FromInt32(9999)}},
		},
	})
	readyEndpoints(t, ns, "sctp", 2)
	np := svc.Spec.Ports[0].NodePort
	if *flagProxy == "doorman" {
		waitAgentsHold(t, ns, "sctp")
		for _, n := range prov.Nodes() {
			for _, want := range []struct{ m, prefix string }{
				{"service-ips", fmt.Sprintf("%s . sctp . 9999 ", svc.Spec.ClusterIP)},
				{"service-endpoints", fmt.Sprintf("%s . sctp . 9999 . ", svc.Spec.ClusterIP)},
				{"service-nodeports", fmt.Sprintf("sctp . %d ", np)},
			} {
				retry.Eventually(t, 30*time.Second, fmt.Sprintf("%s on %s holding %q", want.m, n.Name, want.prefix), func() error {
					ok, err := kernelHasElement(n.Name, want.m, want.prefix)
					if err != nil {
						return err
					}
					if !ok {
						return fmt.Errorf("no such element")
					}
					return nil
				})
			}
		}
	}
	nn, ok := prov.(*provider.NetNS)
	if !ok {
		skipAs(t, "checked without traffic", "SCTP packets are sent from raw sockets in the netns cluster's namespaces; on kind the Service's ClusterIP, endpoint and NodePort elements are checked in every node's kernel")
	}
	clientNS, err := nn.PodNetNS(ns, client.Name)
	if err != nil {
		t.Fatal(err)
	}
	node := prov.Nodes()[0]
	t.Run("ClusterIP from a Pod", func(t *testing.T) {
		sctpReachesBackends(t, nn, ns, backends, clientNS, netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 9999))
	})
	t.Run("NodePort from outside", func(t *testing.T) {
		sctpReachesBackends(t, nn, ns, backends, nn.ExternalNetNS(), netip.AddrPortFrom(netip.MustParseAddr(node.IP), uint16(np)))
	})
}

// sctpReachesBackends sends SCTP INIT chunks from fromNS to target, each
// from a port and with an initiate tag of its own (masquerading may change
// the port), and checks that each arrives at exactly one of
// the backends, addressed to its Pod IP and port 9999, and that every
// backend gets some.
func sctpReachesBackends(t *testing.T, nn *provider.NetNS, ns string, backends []corev1.Pod, fromNS string, target netip.AddrPort) {
	t.Helper()
	type backend struct {
		name string
		ip   netip.Addr
		l    *cluster.SCTPListener
	}
	var bs []backend
	for _, p := range backends {
		pns, err := nn.PodNetNS(ns, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		l, err := cluster.ListenSCTP(pns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		bs = append(bs, backend{name: p.Name, ip: netip.MustParseAddr(p.Status.PodIP), l: l})
	}
	const inits = 20
	got := map[string]int{}
	for i := range inits {
		src := uint16(40000 + i)
		tag := uint32(0x5c7e0000) + uint32(i) + 1
		// The first INIT may come before the rules: resend until it lands.
		var where string
		retry.Eventually(t, 10*time.Second, fmt.Sprintf("SCTP INIT from port %d to %s arriving at a backend", src, target), func() error {
			if err := cluster.SendSCTPInit(fromNS, target, src, tag); err != nil {
				return err
			}
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, b := range bs {
					pkt, ok, err := b.l.Receive(20 * time.Millisecond)
					if err != nil {
						return err
					}
					if !ok || pkt.InitTag != tag {
						continue
					}
					if pkt.To != netip.AddrPortFrom(b.ip, 9999) {
						t.Errorf("INIT from port %d arrived at %s addressed to %s, want %s", src, b.name, pkt.To, netip.AddrPortFrom(b.ip, 9999))
					}
					where = b.name
					return nil
				}
			}
			return fmt.Errorf("no backend received it")
		})
		got[where]++
	}
	t.Logf("%d SCTP INITs to %s arrived at %v", inits, target, got)
	for _, b := range bs {
		if got[b.name] == 0 {
			t.Errorf("backend %s received none of %d INITs to %s: %v", b.name, inits, target, got)
		}
	}
}

// SEMANTICS.md: dual-stack — each family programmed from the slices of
// that family. The netns cluster is dual-stack (IPv4 primary): every
// ClusterIP of a RequireDualStack or PreferDualStack Service answers, the
// backend sees the client Pod's own address of that family, the NodePort
// answers on every node's IPv6 address, and an IPv6-only Service answers
// on IPv6 only.
func TestSemantics_DualStack(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 5353))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	ports := []corev1.ServicePort{tcpPort("http", 80, 8080), udpPort("dns", 53, 5353)}
	prefer := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "prefer"},
		Spec: corev1.ServiceSpec{
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyPreferDualStack),
			Selector:       map[string]string{"app": "backend"},
			Ports:          ports,
		},
	})
	client := fromPod(t, &clients[0])
	if len(prefer.Spec.ClusterIPs) < 2 {
		// A single-stack cluster: the one family answers and no entry of
		// the other is made.
		waitAnswers(t, client, "tcp", addr(prefer.Spec.ClusterIP, 80), podNames(backends))
		doormanOnly(t)
		ks, err := agentKeys(prov.Nodes()[0].Name, ns, "prefer")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			if !strings.HasSuffix(k, "/"+strings.ToLower(string(prefer.Spec.IPFamilies[0]))) {
				t.Errorf("agent holds key %s for a Service with families %v", k, prefer.Spec.IPFamilies)
			}
		}
		notApplicable(t, fmt.Sprintf("the cluster is single-stack: PreferDualStack got families %v; checked instead: that family answers and no entry of the other is made", prefer.Spec.IPFamilies))
	}
	require := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "require"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeNodePort,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicyRequireDualStack),
			Selector:       map[string]string{"app": "backend"},
			Ports:          ports,
		},
	})
	v6only := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "v6only"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeNodePort,
			IPFamilyPolicy: ptr.To(corev1.IPFamilyPolicySingleStack),
			IPFamilies:     []corev1.IPFamily{corev1.IPv6Protocol},
			Selector:       map[string]string{"app": "backend"},
			Ports:          ports,
		},
	})
	dual := []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}

	for _, tc := range []struct {
		svc      *corev1.Service
		families []corev1.IPFamily
	}{
		{prefer, dual},
		{require, dual},
		{v6only, []corev1.IPFamily{corev1.IPv6Protocol}},
	} {
		t.Run(tc.svc.Name, func(t *testing.T) {
			svc := tc.svc
			wantFamilies(t, svc, tc.families)
			// The real EndpointSlice controller makes a slice per family,
			// each holding the backends' addresses of that family.
			for _, fam := range []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol} {
				want := map[string]bool{}
				if slicesContains(tc.families, fam) {
					for _, b := range backends {
						want[podIPOf(t, &b, fam)] = true
					}
				}
				waitSliceAddresses(t, ns, svc.Name, fam, want)
			}
			// Every ClusterIP answers over TCP and UDP, and the backend
			// sees the client Pod's own address of that family.
			for i, ip := range svc.Spec.ClusterIPs {
				fam := svc.Spec.IPFamilies[i]
				for _, proto := range []string{"tcp", "udp"} {
					port := svc.Spec.Ports[0].Port
					if proto == "udp" {
						port = svc.Spec.Ports[1].Port
					}
					target := addr(ip, port)
					waitAnswers(t, client, proto, target, podNames(backends))
					got, err := client.ask(proto, target, "clientip")
					if err != nil {
						t.Fatal(err)
					}
					if host, want := clientHost(t, got), podIPOf(t, &clients[0], fam); host != want {
						t.Errorf("%s %s: backend saw the client as %s, want its %s address %s", proto, target, host, fam, want)
					}
				}
			}
			if *flagProxy == "doorman" {
				waitAgentFamilies(t, ns, svc.Name, tc.families)
			}
			if svc.Spec.Type != corev1.ServiceTypeNodePort {
				return
			}
			// The NodePort answers on each node's address of every family
			// the Service has, from outside the cluster, and not on the
			// others.
			ext := fromExternal(t)
			for _, n := range prov.Nodes() {
				for _, nodeIP := range []string{n.IP, n.IP6} {
					fam := corev1.IPv4Protocol
					if strings.Contains(nodeIP, ":") {
						fam = corev1.IPv6Protocol
					}
					for i, proto := range []string{"tcp", "udp"} {
						target := addr(nodeIP, svc.Spec.Ports[i].NodePort)
						if slicesContains(tc.families, fam) {
							waitAnswers(t, ext, proto, target, podNames(backends))
						} else if proto == "tcp" {
							waitFails(t, ext, proto, target, "refused: the Service has no "+string(fam)+" family", anyError)
						}
					}
				}
			}
			if *flagProxy == "doorman" {
				for _, n := range prov.Nodes() {
					ok, err := kernelHasElement(n.Name, "nodeport-ips6", n.IP6)
					if err != nil {
						t.Fatal(err)
					}
					if !ok {
						t.Errorf("nodeport-ips6 on %s lacks the node's IPv6 address %s", n.Name, n.IP6)
					}
				}
			}
		})
	}
}
