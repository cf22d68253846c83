package hub

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestNodeGoingAwayReachesView: tainting a Node ToBeDeletedByClusterAutoscaler,
// removing the taint and setting its deletion (a finalizer keeps it) each
// change its node's Node entry and wake its session; the Node's deletion
// removes the entry.
func TestNodeGoingAwayReachesView(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Finalizers: []string{"example.com/keep"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}}}}
	h.SetNode(node)
	h.MarkReady()
	s, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deliverAndAck(t, s)
	now := metav1.Now()
	for _, step := range []struct {
		name                      string
		mod                       func(*corev1.Node)
		wantDeleting, wantToBeDel bool
	}{
		{"tainted", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: model.ToBeDeletedTaint, Effect: corev1.TaintEffectNoSchedule}}
		}, false, true},
		{"taint removed", func(n *corev1.Node) { n.Spec.Taints = nil }, false, false},
		{"being deleted", func(n *corev1.Node) { n.DeletionTimestamp = &now }, true, false},
	} {
		version := h.view.Version()
		step.mod(node)
		h.SetNode(node.DeepCopy())
		got := nodeEntry(t, h, "n1")
		if got.GetDeleting() != step.wantDeleting || got.GetToBeDeleted() != step.wantToBeDel {
			t.Errorf("%s: node entry deleting %v toBeDeleted %v, want %v %v", step.name, got.GetDeleting(), got.GetToBeDeleted(), step.wantDeleting, step.wantToBeDel)
		}
		if h.view.Version() <= version {
			t.Errorf("%s: version %d did not move on from %d", step.name, h.view.Version(), version)
		}
		select {
		case <-s.Wake():
		case <-time.After(time.Second):
			t.Fatalf("%s: the session was not woken", step.name)
		}
		deliverAndAck(t, s)
	}
	h.DeleteNode("n1")
	ne, err := h.NodeView("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ne.Entries {
		if e.Key == doormanv1.NodeKey {
			t.Errorf("node entry %v left after the Node's deletion", e)
		}
	}
}
