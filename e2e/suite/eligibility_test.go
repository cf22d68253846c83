//go:build e2e

package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// proxyHealthPort is where kube-proxy, and doorman's agent, answer
// /healthz on every node.
const proxyHealthPort = 10256

// toBeDeletedTaint is the cluster autoscaler's taint on a Node it is
// about to remove.
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// proxyHealthz GETs a node's :10256/healthz from the external client, as
// a cloud load balancer's health check does: its status and nodeEligible.
func proxyHealthz(nodeIP string) (int, *bool, error) {
	tr := &http.Transport{DialContext: prov.DialFromExternal(), DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr(nodeIP, proxyHealthPort)+"/healthz", nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		NodeEligible *bool `json:"nodeEligible"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("body: %w", err)
	}
	return resp.StatusCode, body.NodeEligible, nil
}

// waitProxyHealthz waits until a node's /healthz answers code with
// nodeEligible as wanted.
func waitProxyHealthz(t *testing.T, nodeIP string, code int, eligible bool) {
	t.Helper()
	retry.Eventually(t, 30*time.Second, fmt.Sprintf("/healthz of %s answers %d, nodeEligible %v", nodeIP, code, eligible), func() error {
		got, ne, err := proxyHealthz(nodeIP)
		if err != nil {
			return err
		}
		if ne == nil {
			return fmt.Errorf("answers %d without nodeEligible", got)
		}
		if got != code || *ne != eligible {
			return fmt.Errorf("answers %d, nodeEligible %v", got, *ne)
		}
		return nil
	})
}

// setTaints replaces a Node's taints with a JSON merge patch.
func setTaints(t *testing.T, node string, taints []corev1.Taint) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"taints": taints}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.Client().CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch node %s taints: %v", node, err)
	}
}

// SEMANTICS.md, "Health": a node tainted ToBeDeletedByClusterAutoscaler
// answers :10256/healthz with 503 and nodeEligible false, so that cloud
// load balancers stop sending to it; once the taint is gone, 200 again.
// The same test runs against kube-proxy (-e2e.proxy=kube-proxy).
func TestNodeEligibility_AutoscalerTaint(t *testing.T) {
	track(t)
	onlyOn(t, "netns", "taints a node and reads its :10256 from the external client, which only the netns cluster routes")
	nodes := prov.Nodes()
	node := nodes[len(nodes)-1]
	n, err := prov.Client().CoreV1().Nodes().Get(context.Background(), node.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := n.Spec.Taints
	t.Cleanup(func() { setTaints(t, node.Name, before) })

	waitProxyHealthz(t, node.IP, http.StatusOK, true)
	// PreferNoSchedule: the autoscaler's effect (NoSchedule) would keep
	// other tests' Pods off the node; eligibility reads the key only.
	setTaints(t, node.Name, append(append([]corev1.Taint(nil), before...),
		corev1.Taint{Key: toBeDeletedTaint, Value: fmt.Sprint(time.Now().Unix()), Effect: corev1.TaintEffectPreferNoSchedule}))
	waitProxyHealthz(t, node.IP, http.StatusServiceUnavailable, false)
	setTaints(t, node.Name, before)
	waitProxyHealthz(t, node.IP, http.StatusOK, true)
}
