package hub

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// localCluster is a hub with nodes Nodes and one NodePort Service with
// externalTrafficPolicy Local and one endpoint on every node, in slices
// of 100 endpoints as the EndpointSlice controller packs them, every node
// connected and acknowledged.
const triggerTimeAnnotation = "endpoints.kubernetes.io/last-change-trigger-time"

type localCluster struct {
	h        *Hub
	sessions []*Session
	nodes    int
	byNode   bool
	// slicesRV is the EndpointSlices' resourceVersion in the informers'
	// freshness marker; the other resources stay put, as they do while
	// endpoints change.
	slicesRV atomic.Uint64
}

// marker is the informers' freshness marker, with resourceVersions the
// size of a real cluster's.
func (c *localCluster) marker() map[string]wire.Versions {
	rv := c.slicesRV.Load()
	return map[string]wire.Versions{
		"services": {Seen: 48_120_311, Changed: 48_120_007}, "nodes": {Seen: 48_120_311, Changed: 47_990_123},
		"servicecidrs": {Seen: 48_120_311, Changed: 1_042}, "endpointslices": {Seen: rv, Changed: rv},
	}
}

// slice is the i-th slice, its endpoint on node notReady not ready (none:
// -1), its trigger time at second at.
func (c *localCluster) slice(i, notReady, at int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("ingress-%d", i), Labels: map[string]string{model.LabelServiceName: "ingress"},
			Annotations: map[string]string{triggerTimeAnnotation: time.Unix(int64(1_800_000_000+at), 0).UTC().Format(time.RFC3339)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	for n := i * 100; n < min(c.nodes, (i+1)*100); n++ {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{addrOf(10, n)},
			NodeName:   ptr(fmt.Sprintf("node-%d", n)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(n != notReady)},
		})
	}
	return s
}

func newLocalCluster(t *testing.T, nodes int, byNode bool) *localCluster {
	t.Helper()
	c := &localCluster{nodes: nodes, byNode: byNode}
	c.slicesRV.Store(48_120_311)
	c.h = New(Config{VersionSeed: 1, EndpointsByNode: byNode, Freshness: c.marker})
	for n := range nodes {
		c.h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", n)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: addrOf(172, n)}}}})
	}
	c.h.SetService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "ingress"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, ClusterIPs: []string{"10.96.0.10"},
			Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, HealthCheckNodePort: 31000,
		},
	})
	for i := range (nodes + 99) / 100 {
		c.h.SetSlice(c.slice(i, -1, 0))
	}
	c.h.MarkReady()
	for n := range nodes {
		s, err := c.h.Open(context.Background(), &doormanv1.Hello{NodeName: fmt.Sprintf("node-%d", n), Protocol: version.Protocol})
		if err != nil {
			t.Fatal(err)
		}
		c.sessions = append(c.sessions, s)
		if _, r := c.deliver(t, s); len(r.GetFreshness()) != 4 {
			t.Fatalf("node-%d's first update carries %d resources' freshness, want all 4", n, len(r.GetFreshness()))
		}
	}
	return c
}

// deliver acknowledges the session's next update and returns its size.
func (c *localCluster) deliver(t *testing.T, s *Session) (int, *doormanv1.SyncResponse) {
	t.Helper()
	u, err := s.NextUpdate()
	if err != nil || u == nil {
		t.Fatalf("node %s: update %v, error %v", s.Node(), u, err)
	}
	if err := s.Ack(&doormanv1.Ack{Version: u.Version, ViewDigest: u.ViewDigest}); err != nil {
		t.Fatal(err)
	}
	f := u.Frame()
	r := &doormanv1.SyncResponse{}
	if err := proto.Unmarshal(f.Bytes, r); err != nil {
		t.Fatal(err)
	}
	return len(f.Bytes), r
}

// encoded is the bytes the view holds for the Service: every distinct
// encoding of its entries on any node.
func (c *localCluster) encoded(t *testing.T) int {
	t.Helper()
	views, err := c.h.Service("ns", "ingress")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*wire.Entry]bool{}
	total := 0
	for _, v := range views {
		for _, e := range v.Entries {
			if !seen[e] {
				seen[e] = true
				total += len(e.Bytes)
			}
		}
	}
	return total
}

// changeOne makes one node's endpoint not ready, as the EndpointSlice
// controller writes it (a new trigger time on its slice, a new
// resourceVersion), and returns the bytes of the update each node
// receives, as written on its stream: in all, and the most one node
// received. Each update carries the slice's trigger time and only the
// EndpointSlices' freshness.
func (c *localCluster) changeOne(t *testing.T) (total, most int) {
	t.Helper()
	const node = 7
	c.slicesRV.Add(1)
	c.h.SetSlice(c.slice(node/100, node, 1))
	trigger := time.Unix(1_800_000_001, 0).UnixNano()
	for _, s := range c.sessions {
		n, r := c.deliver(t, s)
		total += n
		most = max(most, n)
		if diff := cmp.Diff(map[string]*doormanv1.ResourceVersions{"endpointslices": {Seen: c.slicesRV.Load(), Changed: c.slicesRV.Load()}}, r.GetFreshness(), protocmp.Transform()); diff != "" {
			t.Fatalf("%s: freshness (-want +got):\n%s", s.Node(), diff)
		}
		var got int64
		if c.byNode {
			got = r.GetTriggerTimeUnixNano()
		} else if len(r.GetUpserts()) > 0 {
			got = r.GetUpserts()[0].GetServicePort().GetTriggerTimeUnixNano()
		}
		if got != trigger {
			t.Fatalf("%s: the update brings trigger time %d, want the slice's %d", s.Node(), got, trigger)
		}
	}
	return total, most
}

// With --local-endpoints-by-node a Service with a Local traffic policy
// costs the control plane memory linear in nodes, and one endpoint's
// change sends every node the same small update whatever the cluster's
// size; sent whole, both grow with nodes times endpoints.
func TestLocalPolicyByNodeIsLinear(t *testing.T) {
	type figures struct{ encoded, total, most int }
	measure := func(nodes int, byNode bool) figures {
		c := newLocalCluster(t, nodes, byNode)
		f := figures{encoded: c.encoded(t)}
		f.total, f.most = c.changeOne(t)
		t.Logf("%4d nodes, by node %-5v: the view holds %8d B for the Service; one endpoint's change sends %9d B in all, at most %6d B to a node (updates as written on the stream)",
			nodes, byNode, f.encoded, f.total, f.most)
		return f
	}
	small, large := measure(100, true), measure(1000, true)
	if r := float64(large.encoded) / float64(small.encoded); r > 12 {
		t.Errorf("by node: the view's bytes for the Service grew %.1f× from 100 to 1,000 nodes, want at most 12× (linear)", r)
	}
	if large.most > small.most+8 {
		t.Errorf("by node: one endpoint's change sends a node %d B at 1,000 nodes against %d B at 100, want the same", large.most, small.most)
	}
	if large.most > 200 {
		t.Errorf("by node: one endpoint's change sends a node %d B, want at most 200", large.most)
	}
	wholeSmall, wholeLarge := measure(100, false), measure(1000, false)
	if r := float64(wholeLarge.encoded) / float64(wholeSmall.encoded); r < 50 {
		t.Errorf("sent whole: the view's bytes grew %.1f× from 100 to 1,000 nodes; the comparison assumes nodes × endpoints (about 100×)", r)
	}
	if large.encoded*10 > wholeLarge.encoded {
		t.Errorf("at 1,000 nodes the view holds %d B by node against %d B whole: want a tenth or less", large.encoded, wholeLarge.encoded)
	}
}

// A control plane that sends ports by node refuses agents that would
// program them without endpoints, and serves this build's.
func TestByNodeRefusesProtocol1(t *testing.T) {
	c := newLocalCluster(t, 3, true)
	_, err := c.h.Open(context.Background(), &doormanv1.Hello{NodeName: "node-1", Protocol: 1, AgentVersion: "v0.3.0"})
	var skew *version.SkewError
	if !errors.As(err, &skew) {
		t.Fatalf("Hello of a protocol-1 agent: %v, want a skew refusal", err)
	}
	whole := New(Config{VersionSeed: 1})
	whole.MarkReady()
	if _, err := whole.Open(context.Background(), &doormanv1.Hello{NodeName: "node-1", Protocol: 1}); err != nil {
		t.Errorf("without ports by node, a protocol-1 agent is refused: %v", err)
	}
}
