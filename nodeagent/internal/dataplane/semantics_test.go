package dataplane_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// The "pods" of these tests are the server namespaces (10.0.2.2, 10.0.3.2,
// 10.0.4.2): the node's Pod CIDRs cover them. The client (10.0.1.2) is
// outside the cluster.
var podCIDRs = []string{"10.0.2.0/23", "10.0.4.0/24", "fd00:2::/63"}

const (
	externalIP = "192.0.2.10"
	lbIP       = "198.51.100.10"
)

func nodeWithPods() *doormanv1.Entry {
	n := nodeEntry(nodeIP, nodeIP6)
	n.GetNode().PodCidrs = podCIDRs
	return n
}

// externalTopology adds routes to the external ranges on the client, and a
// default route on the node (as a real node has one): the node routes a
// packet before DNAT rewrites it.
func externalTopology(t *testing.T) *topology {
	top := newTopology(t, 3)
	top.client.AddRoute(t, "192.0.2.0/24", nodeIP)
	top.client.AddRoute(t, "198.51.100.0/24", nodeIP)
	top.node.AddRoute(t, "default", clientIP)
	return top
}

type svcOpt func(*doormanv1.ServicePort)

func service(name, clusterIP string, port uint32, opts ...svcOpt) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: name, Protocol: tcp, Family: ipv4, ClusterIp: clusterIP, Port: port}
	for _, o := range opts {
		o(sp)
	}
	return spEntry(sp)
}

func endpoints(servers ...int) svcOpt {
	return func(sp *doormanv1.ServicePort) {
		for _, i := range servers {
			sp.Endpoints = append(sp.Endpoints, ep(serverIP(i), 8080))
		}
	}
}

func localEndpoints(servers ...int) svcOpt {
	return func(sp *doormanv1.ServicePort) {
		sp.ExternalPolicyLocal = true
		for _, i := range servers {
			sp.LocalEndpoints = append(sp.LocalEndpoints, ep(serverIP(i), 8080))
		}
	}
}

func withNodePort(p uint32) svcOpt { return func(sp *doormanv1.ServicePort) { sp.NodePort = p } }
func withExternalIPs(ips ...string) svcOpt {
	return func(sp *doormanv1.ServicePort) { sp.ExternalIps = ips }
}
func withLBIPs(ips ...string) svcOpt {
	return func(sp *doormanv1.ServicePort) { sp.LoadBalancerIps = ips }
}
func withRanges(r ...string) svcOpt {
	return func(sp *doormanv1.ServicePort) { sp.LoadBalancerSourceRanges = r }
}
func withAffinity(s uint32) svcOpt {
	return func(sp *doormanv1.ServicePort) { sp.AffinityTimeoutSeconds = s }
}
func internalLocal() svcOpt { return func(sp *doormanv1.ServicePort) { sp.InternalPolicyLocal = true } }

// expect dials addr n times (more while a wanted server has not answered)
// and checks which servers answered and which source addresses they saw
// (nil = do not check).
func expect(t *testing.T, from *testnet.NS, addr string, n int, wantServers, wantSources []string) {
	t.Helper()
	names, sources := answers(t, from, addr, n)
	// Which endpoint a connection gets is random: 10 connections over 2
	// endpoints all land on one 2 times in 1,024. Dial on until every
	// wanted server answered, up to a bound a working spread never reaches
	// (200 more over 2 endpoints miss one 2 times in 2^200).
	for extra := 0; extra < spreadBound && len(names) < len(wantServers); extra++ {
		more, moreSources := answers(t, from, addr, 1)
		for name, k := range more {
			names[name] += k
		}
		for src := range moreSources {
			sources[src] = true
		}
	}
	if diff := cmp.Diff(wantServers, keys(names)); diff != "" {
		t.Errorf("%s from %s: servers that answered %v (-want +got):\n%s", addr, from.Name, names, diff)
	}
	if wantSources == nil {
		return
	}
	if diff := cmp.Diff(wantSources, keys(sources)); diff != "" {
		t.Errorf("%s from %s: client addresses the servers saw (-want +got):\n%s", addr, from.Name, diff)
	}
}

// spreadBound is how many more connections expect makes for a wanted
// server that did not answer yet.
const spreadBound = 200

// expectDropped checks a connection times out: silently dropped, neither
// refused nor answered.
func expectDropped(t *testing.T, from *testnet.NS, addr string) {
	t.Helper()
	got, err := from.DialTCP(addr, 1200*time.Millisecond)
	if !testnet.IsTimeout(err) {
		t.Errorf("%s from %s: got %q, err %v; want a timeout (dropped)", addr, from.Name, got, err)
	}
}

func expectRefused(t *testing.T, from *testnet.NS, addr string) {
	t.Helper()
	_, err := from.DialTCP(addr, 2*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%s from %s: err = %v, want connection refused", addr, from.Name, err)
	}
}

// TestExternalTrafficPolicy: externalIPs and LoadBalancer IPs under Cluster
// policy are served by every endpoint and masqueraded; under Local policy
// external clients reach only the node's endpoints with their source kept,
// or are dropped when the node has none, while Pods and the node itself
// still use every endpoint.
func TestExternalTrafficPolicy(t *testing.T) {
	top := externalTopology(t)
	d := open(t, top.node)
	pod := top.servers[2] // 10.0.4.2: a Pod of this node that is no endpoint
	cluster := service("cluster", "10.96.0.10", 80, endpoints(0, 1), withNodePort(30080),
		withExternalIPs(externalIP), withLBIPs(lbIP))
	local := service("local", "10.96.0.11", 81, endpoints(0, 1), localEndpoints(0), withNodePort(30081),
		withExternalIPs(externalIP), withLBIPs(lbIP))
	noLocal := service("no-local", "10.96.0.12", 82, endpoints(0, 1), localEndpoints(), withNodePort(30082),
		withExternalIPs(externalIP), withLBIPs(lbIP))
	view := viewOf(nodeWithPods(), cluster, local, noLocal)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	both := []string{"server1", "server2"}
	masqueraded := []string{"10.0.2.1", "10.0.3.1"}

	t.Run("cluster policy", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":80", lbIP + ":80", nodeIP + ":30080"} {
			expect(t, top.client, addr, 20, both, masqueraded)
		}
	})
	t.Run("local policy from outside", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":81", lbIP + ":81", nodeIP + ":30081"} {
			expect(t, top.client, addr, 10, []string{"server1"}, []string{clientIP})
		}
	})
	t.Run("local policy from a pod", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":81", lbIP + ":81", nodeIP + ":30081"} {
			expect(t, pod, addr, 20, both, []string{serverIP(2)})
		}
	})
	t.Run("local policy from the node", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":81", lbIP + ":81", nodeIP + ":30081"} {
			expect(t, top.node, addr, 20, both, masqueraded)
		}
	})
	t.Run("no local endpoints: outside dropped", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":82", lbIP + ":82", nodeIP + ":30082"} {
			expectDropped(t, top.client, addr)
		}
	})
	t.Run("no local endpoints: pods and node served", func(t *testing.T) {
		for _, addr := range []string{externalIP + ":82", nodeIP + ":30082"} {
			expect(t, pod, addr, 20, both, nil)
			expect(t, top.node, addr, 20, both, nil)
		}
	})
	t.Run("local endpoint arrives", func(t *testing.T) {
		next := service("no-local", "10.96.0.12", 82, endpoints(0, 1), localEndpoints(1), withNodePort(30082),
			withExternalIPs(externalIP), withLBIPs(lbIP))
		if _, err := d.Apply([]dataplane.Change{{Key: noLocal.GetKey(), Old: noLocal, New: next}}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		for _, addr := range []string{externalIP + ":82", lbIP + ":82", nodeIP + ":30082"} {
			expect(t, top.client, addr, 10, []string{"server2"}, []string{clientIP})
		}
		view[next.GetKey()] = next
		if stats, err := d.Sync(view); err != nil || stats.Ops != 0 {
			t.Errorf("Sync after Apply: %d ops, err %v; want 0, nil", stats.Ops, err)
		}
	})
	t.Run("no endpoints at all: refused", func(t *testing.T) {
		empty := service("empty", "10.96.0.13", 83, localEndpoints(), withExternalIPs(externalIP), withNodePort(30083))
		if _, err := d.Apply([]dataplane.Change{{Key: empty.GetKey(), New: empty}}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		expectRefused(t, top.client, externalIP+":83")
		expectRefused(t, top.client, nodeIP+":30083")
	})
}

// TestInternalTrafficPolicyLocalWithoutEndpoints: upstream drops ClusterIP
// traffic when internalTrafficPolicy is Local and the node has no endpoint
// (the Service may have endpoints elsewhere), instead of rejecting.
func TestInternalTrafficPolicyLocalWithoutEndpoints(t *testing.T) {
	top := newTopology(t, 1)
	d := open(t, top.node)
	svc := service("node-local", "10.96.0.20", 80, internalLocal())
	if _, err := d.Sync(viewOf(nodeWithPods(), svc)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	expectDropped(t, top.client, "10.96.0.20:80")
	expectDropped(t, top.node, "10.96.0.20:80")
	next := service("node-local", "10.96.0.20", 80, internalLocal(), endpoints(0))
	if _, err := d.Apply([]dataplane.Change{{Key: svc.GetKey(), Old: svc, New: next}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	expect(t, top.client, "10.96.0.20:80", 5, []string{"server1"}, []string{clientIP})
}

// TestSourceRanges: a LoadBalancer IP with loadBalancerSourceRanges drops
// other sources before DNAT; its externalIP and NodePort are not filtered;
// changing the ranges takes effect at once.
func TestSourceRanges(t *testing.T) {
	top := externalTopology(t)
	other := testnet.NewNS(t, "other")
	testnet.Link(t, other, []string{"10.0.9.2/24"}, top.node, []string{"10.0.9.1/24"})
	other.AddRoute(t, "default", "10.0.9.1")
	d := open(t, top.node)
	svc := service("lb", "10.96.0.10", 80, endpoints(0, 1), withNodePort(30080), withExternalIPs(externalIP), withLBIPs(lbIP),
		withRanges("10.0.1.0/24", "172.16.0.0/12"))
	if _, err := d.Sync(viewOf(nodeWithPods(), svc)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	both := []string{"server1", "server2"}
	expect(t, top.client, lbIP+":80", 10, both, nil)
	expectDropped(t, other, lbIP+":80")
	expect(t, other, externalIP+":80", 10, both, nil)
	expect(t, other, nodeIP+":30080", 10, both, nil)

	next := service("lb", "10.96.0.10", 80, endpoints(0, 1), withNodePort(30080), withExternalIPs(externalIP), withLBIPs(lbIP),
		withRanges("10.0.9.2/32"))
	stats, err := d.Apply([]dataplane.Change{{Key: svc.GetKey(), Old: svc, New: next}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Two firewall-allow ranges out, one in.
	if stats.Ops != 3 {
		t.Errorf("changing the ranges touched %d objects, want 3", stats.Ops)
	}
	expect(t, other, lbIP+":80", 10, both, nil)
	expectDropped(t, top.client, lbIP+":80")
}

// TestOverlappingSourceRanges: loadBalancerSourceRanges that overlap or
// touch (the API server accepts them) and overlapping Pod CIDRs program, by
// Apply and by Sync, and filter as their union.
func TestOverlappingSourceRanges(t *testing.T) {
	top := externalTopology(t)
	other := testnet.NewNS(t, "other")
	testnet.Link(t, other, []string{"10.0.9.2/24"}, top.node, []string{"10.0.9.1/24"})
	other.AddRoute(t, "default", "10.0.9.1")
	d := open(t, top.node)
	node := nodeWithPods()
	node.GetNode().PodCidrs = append(append([]string(nil), podCIDRs...), podCIDRs...)
	plain := service("lb", "10.96.0.10", 80, endpoints(0, 1), withLBIPs(lbIP))
	if _, err := d.Sync(viewOf(node, plain)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	both := []string{"server1", "server2"}
	// The client (10.0.1.2) is inside every range, other (10.0.9.2) in none.
	overlapping := service("lb", "10.96.0.10", 80, endpoints(0, 1), withLBIPs(lbIP),
		withRanges("10.0.1.0/24", "10.0.1.0/25", "10.0.1.128/25", "10.0.0.0/24", "172.16.0.0/12", "172.16.5.0/24"))
	if _, err := d.Apply([]dataplane.Change{{Key: plain.GetKey(), Old: plain, New: overlapping}}); err != nil {
		t.Fatalf("Apply with overlapping ranges: %v", err)
	}
	expect(t, top.client, lbIP+":80", 10, both, nil)
	expectDropped(t, other, lbIP+":80")

	// From a table without the Service: a Sync programs it, and a second
	// one finds it right.
	if _, err := d.Sync(viewOf(node)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := d.Sync(viewOf(node, overlapping)); err != nil {
		t.Fatalf("Sync with overlapping ranges: %v", err)
	}
	if stats, err := d.Sync(viewOf(node, overlapping)); err != nil || stats.Ops != 0 {
		t.Errorf("second Sync: %d ops, err %v; want 0, nil", stats.Ops, err)
	}
	expect(t, top.client, lbIP+":80", 10, both, nil)
	expectDropped(t, other, lbIP+":80")
}

// TestSessionAffinity: a client sticks to one endpoint across connections
// (ClusterIP and NodePort); the memory expires after the timeout of
// idleness; a removed endpoint is not reused; affinity switches off and on
// live.
func TestSessionAffinity(t *testing.T) {
	top := newTopology(t, 3)
	d := open(t, top.node)
	const timeout = 2
	sticky := func(opts ...svcOpt) *doormanv1.Entry {
		return service("sticky", "10.96.0.10", 80, append([]svcOpt{withNodePort(30080)}, opts...)...)
	}
	cur := sticky(endpoints(0, 1, 2), withAffinity(timeout))
	view := viewOf(nodeWithPods(), cur)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	apply := func(next *doormanv1.Entry) {
		t.Helper()
		if _, err := d.Apply([]dataplane.Change{{Key: cur.GetKey(), Old: cur, New: next}}); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		cur = next
	}
	one := func(addr string) string {
		t.Helper()
		names, _ := answers(t, top.client, addr, 15)
		if len(names) != 1 {
			t.Fatalf("%s: answers spread over %v, want one server (affinity)", addr, names)
		}
		return keys(names)[0]
	}

	first := one("10.96.0.10:80")
	one(nodeIP + ":30080")

	t.Run("expires", func(t *testing.T) {
		// Idle past the timeout: the kernel forgets; a new choice is made.
		// Each round picks at random among three, so a different server
		// shows up within a few rounds.
		seen := map[string]bool{first: true}
		for round := 0; round < 8 && len(seen) < 2; round++ {
			time.Sleep(timeout*time.Second + 600*time.Millisecond)
			if n := affinityElements(t, d); n != 0 {
				t.Fatalf("affinity set holds %d elements after the timeout, want 0", n)
			}
			seen[one("10.96.0.10:80")] = true
		}
		if len(seen) < 2 {
			t.Errorf("always %v after expiry over 8 rounds: the choice is not made afresh", keys(seen))
		}
	})

	t.Run("removed endpoint not reused", func(t *testing.T) {
		was := one("10.96.0.10:80")
		var keep []int
		for i := 0; i < 3; i++ {
			if serverName(i) != was {
				keep = append(keep, i)
			}
		}
		apply(sticky(endpoints(keep...), withAffinity(timeout)))
		now := one("10.96.0.10:80")
		if now == was {
			t.Errorf("still sent to %s after it left the Service", was)
		}
		apply(sticky(endpoints(0, 1, 2), withAffinity(timeout)))
	})

	t.Run("switch off and on", func(t *testing.T) {
		apply(sticky(endpoints(0, 1, 2)))
		names, _ := answers(t, top.client, "10.96.0.10:80", 30)
		if len(names) < 2 {
			t.Errorf("affinity off: every connection went to %v, want a spread", names)
		}
		apply(sticky(endpoints(0, 1, 2), withAffinity(timeout)))
		one("10.96.0.10:80")
		view[cur.GetKey()] = cur
		// The first Sync retires the chains without affinity; the next finds
		// nothing to do although the kernel's affinity memory has entries.
		if _, err := d.Sync(view); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if n := affinityElements(t, d); n == 0 {
			t.Errorf("affinity set empty right after a connection")
		}
		if stats, err := d.Sync(view); err != nil || stats.Ops != 0 {
			t.Errorf("second Sync after switching: %d ops, err %v; want 0, nil (affinity memory is not compared)", stats.Ops, err)
		}
	})
}

func affinityElements(t *testing.T, d *dataplane.Dataplane) int {
	t.Helper()
	resp, err := d.Inspect(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.GetMaps() {
		if m.GetName() == render.SetAffinityTCP {
			return int(m.GetElementCount())
		}
	}
	t.Fatal("no affinity set")
	return 0
}

// TestHairpin: a Pod reaching itself through its Service is masqueraded
// (to the node's address), so the reply comes back through the node.
func TestHairpin(t *testing.T) {
	top := newTopology(t, 2)
	d := open(t, top.node)
	svc := service("self", "10.96.0.10", 80, endpoints(0), withNodePort(30080))
	if _, err := d.Sync(viewOf(nodeWithPods(), svc)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	server := top.servers[0]
	expect(t, server, "10.96.0.10:80", 5, []string{"server1"}, []string{"10.0.2.1"})
	// Another Pod through the same Service keeps its own address.
	expect(t, top.servers[1], "10.96.0.10:80", 5, []string{"server1"}, []string{serverIP(1)})
}

// TestAffinityRulesAccepted: the kernel takes every per-K chain kind with
// and without affinity, for IPv4 and IPv6 (the golden file shows the text).
func TestAffinityRulesAccepted(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	var entries []*doormanv1.Entry
	for i, fam := range []doormanv1.IPFamily{ipv4, ipv6} {
		cip, ext, lb, eps := "10.96.0.10", "192.0.2.10", "198.51.100.10", []string{"10.0.2.2", "10.0.3.2"}
		if fam == ipv6 {
			cip, ext, lb, eps = "fd00:96::10", "2001:db8::10", "2001:db8:1::10", []string{"fd00:2::2", "fd00:3::2"}
		}
		for j, aff := range []uint32{0, 30} {
			for k, local := range []bool{false, true} {
				sp := &doormanv1.ServicePort{Namespace: "ns", Name: fmt.Sprintf("s%d%d%d", i, j, k), Protocol: tcp, Family: fam,
					ClusterIp: cip, Port: uint32(80 + 4*j + 2*k), NodePort: uint32(30000 + 4*j + 2*k),
					ExternalIps: []string{ext}, LoadBalancerIps: []string{lb}, AffinityTimeoutSeconds: aff,
					ExternalPolicyLocal: local, Endpoints: []*doormanv1.Endpoint{ep(eps[0], 80), ep(eps[1], 80)}}
				if local {
					sp.LocalEndpoints = []*doormanv1.Endpoint{ep(eps[0], 80)}
				}
				entries = append(entries, spEntry(sp))
			}
		}
	}
	view := viewOf(append(entries, nodeWithPods())...)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got := chainNames(t, d)
	want := render.View(view)
	for _, c := range want.Chains {
		if !contains(got, c.Name) {
			t.Errorf("chain %s missing from the kernel", c.Name)
		}
	}
	if stats, err := d.Sync(view); err != nil || stats.Ops != 0 {
		t.Errorf("second Sync: %d ops, err %v; want 0, nil", stats.Ops, err)
	}
	if t.Failed() {
		t.Logf("kernel chains: %s", strings.Join(got, " "))
	}
}

func clusterEndpoints(servers ...int) svcOpt {
	return func(sp *doormanv1.ServicePort) {
		for _, i := range servers {
			sp.ClusterEndpoints = append(sp.ClusterEndpoints, ep(serverIP(i), 8080))
		}
	}
}

// TestInternalTrafficPolicyLocalWithNodePort: internalTrafficPolicy Local
// and externalTrafficPolicy Cluster with a NodePort, the only endpoint on
// another node: ClusterIP traffic from the node is dropped (no local
// endpoint), while the NodePort, reached from outside, is served by the
// remote endpoint from the cluster-wide set. Once the node has an endpoint
// too, the ClusterIP uses it alone and the NodePort still reaches both.
func TestInternalTrafficPolicyLocalWithNodePort(t *testing.T) {
	top := newTopology(t, 2)
	d := open(t, top.node)
	svc := service("node-local", "10.96.0.30", 80, internalLocal(), withNodePort(30030), clusterEndpoints(1))
	if _, err := d.Sync(viewOf(nodeWithPods(), svc)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	expectDropped(t, top.node, "10.96.0.30:80")
	expect(t, top.client, nodeIP+":30030", 5, []string{"server2"}, []string{"10.0.3.1"})

	next := service("node-local", "10.96.0.30", 80, internalLocal(), withNodePort(30030), endpoints(0), clusterEndpoints(0, 1))
	if _, err := d.Apply([]dataplane.Change{{Key: svc.GetKey(), Old: svc, New: next}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	expect(t, top.node, "10.96.0.30:80", 10, []string{"server1"}, nil)
	expect(t, top.client, nodeIP+":30030", 40, []string{"server1", "server2"}, nil)

	// No endpoint anywhere: every frontend rejects, as upstream.
	gone := service("node-local", "10.96.0.30", 80, internalLocal(), withNodePort(30030))
	if _, err := d.Apply([]dataplane.Change{{Key: svc.GetKey(), Old: next, New: gone}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	expectRefused(t, top.node, "10.96.0.30:80")
	expectRefused(t, top.client, nodeIP+":30030")
}

// TestServiceCIDRs: an address of the Service CIDRs that no Service holds
// is dropped, from a client and from the node itself, where without the
// Service CIDRs it is routed on and answered; ClusterIPs keep working, an
// undeclared port of one is still refused, and a range leaving the Node
// entry stops dropping with the same update.
func TestServiceCIDRs(t *testing.T) {
	top := newTopology(t, 1)
	// The node routes the Service ranges on to server1: let it answer on
	// an address of them no Service holds, as whatever lies beyond a real
	// node's default route may.
	stray, stray6 := "10.96.5.5:80", "[fd00:96::5:5]:80"
	top.servers[0].AddAddr(t, "lo", "10.96.5.5/32", "fd00:96::5:5/128")
	top.servers[0].TCPEcho(t, "stray", stray)
	top.servers[0].TCPEcho(t, "stray", stray6)
	d := open(t, top.node)
	node := func(cidrs ...string) *doormanv1.Entry {
		n := nodeEntry(nodeIP, nodeIP6)
		n.GetNode().ServiceCidrs = cidrs
		return n
	}
	without, with := node(), node("10.96.0.0/16", "fd00:96::/64")
	web := webService(serverIP(0))
	if _, err := d.Sync(viewOf(without, web)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	t.Run("control: without Service CIDRs the address answers", func(t *testing.T) {
		for _, from := range []*testnet.NS{top.client, top.node} {
			expect(t, from, stray, 1, []string{"stray"}, nil)
			expect(t, from, stray6, 1, []string{"stray"}, nil)
		}
	})

	stats, err := d.Apply([]dataplane.Change{{Key: doormanv1.NodeKey, Old: without, New: with}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// One range of each family: a start and an end element each.
	if stats.Ops != 4 {
		t.Errorf("adding two Service CIDRs touched %d objects, want 4", stats.Ops)
	}
	t.Run("unallocated address dropped", func(t *testing.T) {
		for _, from := range []*testnet.NS{top.client, top.node} {
			expectDropped(t, from, stray)
			expectDropped(t, from, stray6)
		}
	})
	t.Run("ClusterIP still served", func(t *testing.T) {
		expect(t, top.client, "10.96.0.10:80", 3, []string{"server1"}, nil)
		expect(t, top.node, "10.96.0.10:80", 3, []string{"server1"}, nil)
	})
	t.Run("undeclared port of a ClusterIP still refused", func(t *testing.T) {
		expectRefused(t, top.client, "10.96.0.10:81")
		expectRefused(t, top.node, "10.96.0.10:81")
	})
	t.Run("Sync finds it right", func(t *testing.T) {
		if stats, err := d.Sync(viewOf(with, web)); err != nil || stats.Ops != 0 {
			t.Errorf("Sync after Apply: %d ops, err %v; want 0, nil", stats.Ops, err)
		}
	})
	t.Run("drift repaired", func(t *testing.T) {
		// Someone empties service-cidrs and the chain that drops them.
		c, err := nftables.New(nftables.WithNetNSFd(top.node.FD()))
		if err != nil {
			t.Fatal(err)
		}
		table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
		c.FlushSet(&nftables.Set{Table: table, Name: render.SetServiceCIDRs})
		c.FlushChain(&nftables.Chain{Table: table, Name: render.ChainClusterIPsCheck})
		if err := c.Flush(); err != nil {
			t.Fatalf("make drift: %v", err)
		}
		expect(t, top.client, stray, 1, []string{"stray"}, nil)
		stats, err := d.Sync(viewOf(with, web))
		if err != nil {
			t.Fatalf("Sync after drift: %v", err)
		}
		// 2 elements (start and end of 10.96.0.0/16) + flush of
		// cluster-ips-check + its 4 rules.
		if stats.Ops != 7 {
			t.Errorf("Sync repairing drift touched %d objects, want 7", stats.Ops)
		}
		expectDropped(t, top.client, stray)
		expectRefused(t, top.client, "10.96.0.10:81")
	})

	if _, err := d.Apply([]dataplane.Change{{Key: doormanv1.NodeKey, Old: with, New: without}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	t.Run("range gone: answered again", func(t *testing.T) {
		expect(t, top.client, stray, 1, []string{"stray"}, nil)
		expect(t, top.client, stray6, 1, []string{"stray"}, nil)
	})
}
