package model

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeGoingAway: the Node entry says when its Node is being deleted
// or tainted ToBeDeletedByClusterAutoscaler (any effect), for the agent's
// /healthz; other taints do not count.
func TestNodeGoingAway(t *testing.T) {
	now := metav1.Now()
	taint := func(key string) corev1.Taint {
		return corev1.Taint{Key: key, Value: "1700000000", Effect: corev1.TaintEffectNoSchedule}
	}
	for _, tc := range []struct {
		name                      string
		deletion                  *metav1.Time
		taints                    []corev1.Taint
		wantDeleting, wantToBeDel bool
	}{
		{"serving", nil, nil, false, false},
		{"other taints", nil, []corev1.Taint{taint("node.kubernetes.io/unschedulable"), taint("DeletionCandidateOfClusterAutoscaler")}, false, false},
		{"autoscaler taint", nil, []corev1.Taint{taint("node.kubernetes.io/unschedulable"), taint(ToBeDeletedTaint)}, false, true},
		{"autoscaler taint, NoExecute", nil, []corev1.Taint{{Key: ToBeDeletedTaint, Effect: corev1.TaintEffectNoExecute}}, false, true},
		{"being deleted", &now, nil, true, false},
		{"both", &now, []corev1.Taint{taint(ToBeDeletedTaint)}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", DeletionTimestamp: tc.deletion, Finalizers: []string{"example.com/keep"}},
				Spec: corev1.NodeSpec{Taints: tc.taints}}
			got, err := Node(n, NodePortAddresses{})
			if err != nil {
				t.Fatal(err)
			}
			if got.GetDeleting() != tc.wantDeleting || got.GetToBeDeleted() != tc.wantToBeDel {
				t.Errorf("deleting %v toBeDeleted %v, want %v %v", got.GetDeleting(), got.GetToBeDeleted(), tc.wantDeleting, tc.wantToBeDel)
			}
		})
	}
}
