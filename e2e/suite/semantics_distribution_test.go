//go:build e2e

package suite

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// The tests below judge spec.trafficDistribution by which backend Pods
// answer clients on each node. The rule, as kube-proxy v1.36 applies it
// to a node: only ready endpoints count; when every one of them has a node
// hint and one names this node, those hinted for this node; otherwise when
// every one has a zone hint and one names this node's zone, those hinted
// for the zone; otherwise all. With no ready endpoint anywhere, hints are
// ignored and the serving terminating endpoints are used.

// backend is an echo Pod behind a Service and the node it runs on.
type backend struct {
	name, node string
}

// nearest is the set the rule picks for a client on node when the
// EndpointSlice controller hints each endpoint for its own node (byNode)
// and its own zone: the ready backends on the node, else in its zone,
// else all of them.
func nearest(t *testing.T, node string, ready []backend, byNode bool) map[string]bool {
	t.Helper()
	zone := nodeOf(t, node).Zone
	pick := func(in func(backend) bool) map[string]bool {
		out := map[string]bool{}
		for _, b := range ready {
			if in(b) {
				out[b.name] = true
			}
		}
		return out
	}
	if byNode {
		if s := pick(func(b backend) bool { return b.node == node }); len(s) > 0 {
			return s
		}
	}
	if s := pick(func(b backend) bool { return zone != "" && nodeOf(t, b.node).Zone == zone }); len(s) > 0 {
		return s
	}
	return pick(func(backend) bool { return true })
}

// answeredBy waits until requests from a to target are answered only by
// want, every member of want included.
func answeredBy(t *testing.T, a asker, target string, want map[string]bool) {
	t.Helper()
	if len(want) > 1 {
		waitAnswers(t, a, "tcp", target, want)
	}
	waitOnly(t, a, "tcp", target, want, 20)
}

// waitControllerHints waits until the controller has hinted every
// endpoint of the Service for its own zone and, with byNode, its own node.
func waitControllerHints(t *testing.T, ns, svc string, byNode bool) {
	t.Helper()
	retry.Eventually(t, time.Minute, "hints on every endpoint of "+svc, func() error {
		for _, s := range slices(t, ns, svc) {
			for _, e := range s.Endpoints {
				h := e.Hints
				if h == nil || len(h.ForZones) != 1 || e.Zone == nil || h.ForZones[0].Name != *e.Zone {
					return fmt.Errorf("endpoint %v in zone %v: zone hints %+v", e.Addresses, ptr.Deref(e.Zone, ""), h)
				}
				if byNode && (len(h.ForNodes) != 1 || e.NodeName == nil || h.ForNodes[0].Name != *e.NodeName) {
					return fmt.Errorf("endpoint %v on %v: node hints %v", e.Addresses, ptr.Deref(e.NodeName, ""), h.ForNodes)
				}
			}
		}
		return nil
	})
}

// distributed runs one Service with the given trafficDistribution, a
// client Pod on every node and backends on backendNodes: each client is
// answered by the nearest backends; once the first backend terminates
// (still serving), its clients move to the next nearest ready ones.
func distributed(t *testing.T, mode string, backendNodes []string) {
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	byNode := mode == corev1.ServiceTrafficDistributionPreferSameNode
	labels := map[string]string{"app": "backend"}
	var ready []backend
	for i, n := range backendNodes {
		p := echoPod(t, ns, fmt.Sprintf("backend-%d", i), n, labels, 60, containerPort("http", corev1.ProtocolTCP, 8080))
		ready = append(ready, backend{name: p.Name, node: n})
	}
	clients := map[string]asker{}
	for i, n := range nodes {
		p := echoPod(t, ns, fmt.Sprintf("client-%d", i), n, nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
		clients[n] = fromPod(t, &p)
	}
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "dist"},
		Spec: corev1.ServiceSpec{
			TrafficDistribution: ptr.To(mode),
			Selector:            labels,
			Ports:               []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "dist", len(ready))
	waitControllerHints(t, ns, "dist", byNode)
	target := addr(svc.Spec.ClusterIP, 80)
	for _, n := range nodes {
		t.Run("client on "+n+" (zone "+nodeOf(t, n).Zone+")", func(t *testing.T) {
			answeredBy(t, clients[n], target, nearest(t, n, ready, byNode))
		})
	}
	t.Run("terminating backend on "+ready[0].node+" is left for the next nearest", func(t *testing.T) {
		gone := ready[0]
		pod, err := prov.Client().CoreV1().Pods(ns).Get(context.Background(), gone.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deletePod(t, ns, gone.name, 60)
		waitEndpoint(t, ns, "dist", pod.Status.PodIP, false, true, true)
		answeredBy(t, clients[gone.node], target, nearest(t, gone.node, ready[1:], byNode))
	})
}

// SEMANTICS.md: trafficDistribution PreferSameZone — each client is
// answered by the ready endpoints of its own zone; a zone without one uses
// all; a terminating endpoint does not count.
func TestSemantics_Distribution_PreferSameZone(t *testing.T) {
	track(t)
	distributed(t, corev1.ServiceTrafficDistributionPreferSameZone, nodeNames(t, 3))
}

// SEMANTICS.md: trafficDistribution PreferSameNode — each client is
// answered by the ready endpoints on its own node; a node without one
// falls back to its zone, then to all; a terminating endpoint does not
// count. Backends run on the first two nodes only, so the others fall
// back (to their zone on a cluster with two nodes in one zone, as
// -e2e.nodes=4 makes, else to all).
func TestSemantics_Distribution_PreferSameNode(t *testing.T) {
	track(t)
	nodes := nodeNames(t, 3)
	distributed(t, corev1.ServiceTrafficDistributionPreferSameNode, nodes[:2])
}

// hinted is one endpoint of a hand-made slice: its Pod, conditions and
// hints.
type hinted struct {
	pod                  corev1.Pod
	ready, serving, term bool
	forNodes, forZones   []string
}

func (h hinted) endpoint() discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{
		Addresses: []string{h.pod.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{
			Ready: ptr.To(h.ready), Serving: ptr.To(h.serving), Terminating: ptr.To(h.term),
		},
		NodeName:  ptr.To(h.pod.Spec.NodeName),
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: h.pod.Namespace, Name: h.pod.Name, UID: h.pod.UID},
	}
	if len(h.forNodes)+len(h.forZones) > 0 {
		e.Hints = &discoveryv1.EndpointHints{}
	}
	for _, n := range h.forNodes {
		e.Hints.ForNodes = append(e.Hints.ForNodes, discoveryv1.ForNode{Name: n})
	}
	for _, z := range h.forZones {
		e.Hints.ForZones = append(e.Hints.ForZones, discoveryv1.ForZone{Name: z})
	}
	return e
}

// SEMANTICS.md: trafficDistribution — the fallbacks, on a Service without
// selector whose EndpointSlice the test writes, so the hints are exactly
// those given: node hints count only when every ready endpoint has one and
// one names this node; zone hints likewise; terminating and not-ready
// endpoints neither count nor are used while a ready one exists; a
// ready-but-not-serving endpoint is ready.
func TestSemantics_Distribution_HintFallbacks(t *testing.T) {
	track(t)
	ns := namespace(t)
	nodes := nodeNames(t, 3)
	zone := func(i int) string { return nodeOf(t, nodes[i]).Zone }
	var pods, clients []corev1.Pod
	for i, n := range nodes[:3] {
		pods = append(pods, echoPod(t, ns, fmt.Sprintf("backend-%d", i), n, nil, 2, containerPort("http", corev1.ProtocolTCP, 8080)))
		clients = append(clients, echoPod(t, ns, fmt.Sprintf("client-%d", i), n, nil, 2, containerPort("http", corev1.ProtocolTCP, 8080)))
	}
	svc := createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "manual"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{tcpPort("http", 80, 8080)}},
	})
	target := addr(svc.Spec.ClusterIP, 80)
	from := []asker{fromPod(t, &clients[0]), fromPod(t, &clients[1]), fromPod(t, &clients[2])}
	b := func(i int) string { return pods[i].Name }
	ready := func(i int, forNodes []string, forZones ...string) hinted {
		return hinted{pod: pods[i], ready: true, serving: true, forNodes: forNodes, forZones: forZones}
	}
	terminating := func(h hinted) hinted { h.ready, h.serving, h.term = false, true, true; return h }
	notReady := func(h hinted) hinted { h.ready, h.serving = false, false; return h }
	notServing := func(h hinted) hinted { h.serving = false; return h }
	own := func(i int) hinted { return ready(i, []string{nodes[i]}, zone(i)) }

	slice := manualSlice()
	cs := prov.Client().DiscoveryV1().EndpointSlices(ns)
	apply := func(t *testing.T, eps ...hinted) {
		t.Helper()
		slice.Endpoints = nil
		for _, h := range eps {
			slice.Endpoints = append(slice.Endpoints, h.endpoint())
		}
		var err error
		if slice.ResourceVersion == "" {
			slice, err = cs.Create(context.Background(), slice, metav1.CreateOptions{})
		} else {
			slice, err = cs.Update(context.Background(), slice, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	steps := []struct {
		name string
		eps  []hinted
		// want[i]: who answers the client on nodes[i]; nil: not checked.
		want []map[string]bool
	}{
		{
			name: "own node and zone hints: own node",
			eps:  []hinted{own(0), own(1), own(2)},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(2))},
		},
		{
			name: "no endpoint hinted for the node: its zone",
			// Every endpoint has a node hint, none for nodes[2]; backend-0
			// is hinted for nodes[2]'s zone.
			eps:  []hinted{ready(0, []string{nodes[0]}, zone(2)), ready(1, []string{nodes[1]}, zone(1))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(0))},
		},
		{
			name: "node hint missing on one endpoint: zone hints decide",
			eps:  []hinted{ready(0, []string{nodes[0]}, zone(0)), ready(1, nil, zone(0)), own(2)},
			want: []map[string]bool{set(b(0), b(1)), nil, set(b(2))},
		},
		{
			name: "node hints naming another node only: zone, else all",
			eps:  []hinted{ready(0, []string{nodes[1]}, zone(0)), ready(1, []string{nodes[1]}, zone(1))},
			want: []map[string]bool{set(b(0)), set(b(0), b(1)), set(b(0), b(1))},
		},
		{
			name: "zone hint missing on one endpoint: all",
			eps:  []hinted{ready(0, nil, zone(0)), ready(1, nil), ready(2, nil, zone(2))},
			want: []map[string]bool{set(b(0), b(1), b(2)), nil, nil},
		},
		{
			name: "node hints: a terminating endpoint without hints does not count",
			eps:  []hinted{own(0), own(1), terminating(ready(2, nil))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(0), b(1))},
		},
		{
			name: "node hints: a terminating endpoint hinted for the node is not used",
			eps:  []hinted{terminating(own(0)), own(1), own(2)},
			want: []map[string]bool{set(b(1), b(2)), set(b(1)), set(b(2))},
		},
		{
			name: "node hints: a not-ready endpoint without hints does not count",
			eps:  []hinted{own(0), own(1), notReady(ready(2, nil))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(0), b(1))},
		},
		{
			name: "node hints: a ready but not serving endpoint is ready",
			eps:  []hinted{notServing(own(0)), own(1), own(2)},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(2))},
		},
		{
			name: "zone hints: a terminating endpoint without hints does not count",
			eps:  []hinted{ready(0, nil, zone(0)), ready(1, nil, zone(1)), terminating(ready(2, nil))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(0), b(1))},
		},
		{
			name: "zone hints: a terminating endpoint hinted for the zone is not used",
			eps:  []hinted{terminating(ready(0, nil, zone(0))), ready(1, nil, zone(1)), ready(2, nil, zone(2))},
			want: []map[string]bool{set(b(1), b(2)), set(b(1)), set(b(2))},
		},
		{
			name: "zone hints: a not-ready endpoint without hints does not count",
			eps:  []hinted{ready(0, nil, zone(0)), ready(1, nil, zone(1)), notReady(ready(2, nil))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(0), b(1))},
		},
		{
			name: "zone hints: a ready but not serving endpoint is ready",
			eps:  []hinted{notServing(ready(0, nil, zone(0))), ready(1, nil, zone(1)), ready(2, nil, zone(2))},
			want: []map[string]bool{set(b(0)), set(b(1)), set(b(2))},
		},
		{
			name: "no ready endpoint: every serving terminating one, hints aside",
			eps:  []hinted{terminating(own(0)), terminating(own(1)), notReady(own(2))},
			want: []map[string]bool{set(b(0), b(1)), nil, set(b(0), b(1))},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			apply(t, s.eps...)
			for i, want := range s.want {
				if want != nil {
					answeredBy(t, from[i], target, want)
				}
			}
		})
	}
}
