package cluster

import (
	"context"
	"fmt"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	leaseDuration  = 40
	leaseRenew     = 10 * time.Second
	statusInterval = 30 * time.Second
)

func (c *Cluster) registerNodes(ctx context.Context) error {
	for _, n := range c.nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name: n.Name,
				Labels: map[string]string{
					"kubernetes.io/hostname":        n.Name,
					"kubernetes.io/os":              "linux",
					"kubernetes.io/arch":            "amd64",
					"topology.kubernetes.io/zone":   n.Zone,
					"topology.kubernetes.io/region": "local",
				},
			},
			Spec: corev1.NodeSpec{PodCIDR: n.PodCIDR, PodCIDRs: []string{n.PodCIDR, n.PodCIDR6}},
		}
		created, err := c.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		created.Status = nodeStatus(n, time.Now())
		if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", n.Name, err)
		}
		if err := c.renewLease(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

func nodeStatus(n Node, now time.Time) corev1.NodeStatus {
	t := metav1.NewTime(now)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type:               corev1.NodeReady,
			Status:             corev1.ConditionTrue,
			Reason:             "KubeletReady",
			Message:            "node simulated by the doorman e2e cluster",
			LastHeartbeatTime:  t,
			LastTransitionTime: t,
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IP},
			{Type: corev1.NodeInternalIP, Address: n.IP6},
			{Type: corev1.NodeHostName, Address: n.Name},
		},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion:          "v1.36.3",
			OperatingSystem:         "linux",
			Architecture:            "amd64",
			ContainerRuntimeVersion: "doorman-e2e://0",
		},
	}
}

func (c *Cluster) renewLease(ctx context.Context, n Node) error {
	leases := c.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(n.Name),
				LeaseDurationSeconds: ptr.To[int32](leaseDuration),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create lease of %s: %w", n.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("lease of %s: %w", n.Name, err)
	}
	l.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease of %s: %w", n.Name, err)
	}
	return nil
}

// heartbeat keeps every node's Lease fresh and its Ready condition current,
// as a kubelet would.
func (c *Cluster) heartbeat(ctx context.Context) {
	lease := time.NewTicker(leaseRenew)
	defer lease.Stop()
	status := time.NewTicker(statusInterval)
	defer status.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lease.C:
			for _, n := range c.nodes {
				if err := c.renewLease(ctx, n); err != nil && ctx.Err() == nil {
					c.log.Warn("lease renewal failed", "node", n.Name, "error", err)
				}
			}
		case <-status.C:
			for _, n := range c.nodes {
				if err := c.touchNodeStatus(ctx, n); err != nil && ctx.Err() == nil {
					c.log.Warn("node status heartbeat failed", "node", n.Name, "error", err)
				}
			}
		}
	}
}

func (c *Cluster) touchNodeStatus(ctx context.Context, n Node) error {
	node, err := c.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	found := false
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			node.Status.Conditions[i].LastHeartbeatTime = now
			found = true
		}
	}
	if !found {
		node.Status = nodeStatus(n, now.Time)
	}
	_, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// netnsHTTP is an HTTP client whose connections start in a namespace.
type netnsHTTP struct{ ns string }

func (h *netnsHTTP) client() *http.Client {
	return &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{DialContext: dialerIn(h.ns), DisableKeepAlives: true},
	}
}
