package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestNothingServedBeforeSync(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Open(ctx, &doormanv1.Hello{NodeName: "n1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open before sync = %v, want it to wait until the deadline", err)
	}
	if h.Ready() {
		t.Fatal("ready before MarkReady")
	}
	h.MarkReady()
	s, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := nextFrame(s)
	if err != nil || f == nil {
		t.Fatalf("Next after sync = %v, %v", f, err)
	}
}

func TestReplacedSessionIsWokenAndStale(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	h.MarkReady()
	old, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := nextFrame(old); err != nil {
		t.Fatal(err)
	}
	// Drain the wake-up Open left, so the next one comes from the
	// replacement.
	select {
	case <-old.Wake():
	default:
	}
	replacement, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer replacement.Close()
	select {
	case <-old.Wake():
	case <-time.After(time.Second):
		t.Fatal("the replaced session was not woken")
	}
	if _, err := nextFrame(old); !errors.Is(err, differ.ErrStale) {
		t.Fatalf("Next on the replaced session = %v, want ErrStale", err)
	}
}

// nodeEntry decodes the Node entry of a node's current view.
func nodeEntry(t *testing.T, h *Hub, node string) *doormanv1.Node {
	t.Helper()
	ne, err := h.NodeView(node)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ne.Entries {
		if e.Key != doormanv1.NodeKey {
			continue
		}
		m, err := e.Message()
		if err != nil {
			t.Fatal(err)
		}
		return m.GetNode()
	}
	t.Fatalf("node %s has no node entry", node)
	return nil
}

// TestServiceCIDRsReachEveryNode: every node's Node entry carries the
// union of the ServiceCIDR objects' ranges, whichever came first; a
// change of the objects changes every entry and wakes every session; a bad
// CIDR is skipped.
func TestServiceCIDRsReachEveryNode(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	node := func(name string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}}}}
	}
	cidr := func(name string, cidrs ...string) *networkingv1.ServiceCIDR {
		return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
	}
	h.SetNode(node("n1"))
	h.SetServiceCIDR(cidr("kubernetes", "10.96.0.0/12", "fd00:10:96::/108"))
	h.SetNode(node("n2"))
	h.MarkReady()
	want := func(t *testing.T, cidrs ...string) {
		t.Helper()
		for _, n := range []string{"n1", "n2"} {
			if diff := cmp.Diff(cidrs, nodeEntry(t, h, n).GetServiceCidrs(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("%s: service CIDRs (-want +got):\n%s", n, diff)
			}
			if got := nodeEntry(t, h, n).GetNodeportAddresses(); len(got) != 1 {
				t.Errorf("%s: nodeport addresses %v, want the node's own", n, got)
			}
		}
	}
	want(t, "10.96.0.0/12", "fd00:10:96::/108")

	s, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deliverAndAck(t, s)
	woken := func(t *testing.T) {
		t.Helper()
		select {
		case <-s.Wake():
		case <-time.After(time.Second):
			t.Fatal("the session was not woken")
		}
	}

	version := h.view.Version()
	h.SetServiceCIDR(cidr("extra", "10.200.0.0/24", "10.200.0.300/24"))
	want(t, "10.96.0.0/12", "10.200.0.0/24", "fd00:10:96::/108")
	woken(t)
	if h.view.Version() <= version {
		t.Errorf("version %d did not move on from %d", h.view.Version(), version)
	}

	version = h.view.Version()
	h.SetServiceCIDR(cidr("same", "10.200.0.0/24"))
	if h.view.Version() != version {
		t.Errorf("a ServiceCIDR adding no range moved the version from %d to %d", version, h.view.Version())
	}

	h.DeleteServiceCIDR("extra")
	want(t, "10.96.0.0/12", "10.200.0.0/24", "fd00:10:96::/108")
	h.DeleteServiceCIDR("same")
	want(t, "10.96.0.0/12", "fd00:10:96::/108")
	woken(t)
	h.DeleteServiceCIDR("kubernetes")
	want(t)
}

// nextFrame is the frame the session would send now, encoded as the
// server encodes it, or nil.
func nextFrame(s *Session) (*wire.Frame, error) {
	u, err := s.NextUpdate()
	if err != nil || u == nil {
		return nil, err
	}
	return u.Frame(), nil
}

// deliverAndAck takes the session's next update and acknowledges it, as
// an agent that applied it does, then drains the wake the Ack gives: the
// session is idle, waiting for a change.
func deliverAndAck(t *testing.T, s *Session) {
	t.Helper()
	u, err := s.NextUpdate()
	if err != nil || u == nil {
		t.Fatalf("NextUpdate = %v, %v", u, err)
	}
	if err := s.Ack(&doormanv1.Ack{Version: u.Version, ViewDigest: u.ViewDigest}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Wake():
	default:
	}
}
