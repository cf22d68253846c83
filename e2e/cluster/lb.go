package cluster

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// SetLoadBalancerIngress writes a LoadBalancer Service's
// status.loadBalancer.ingress, as a load-balancer controller would. An
// ipMode of "" leaves the field unset (VIP).
func (c *Cluster) SetLoadBalancerIngress(ctx context.Context, ns, name string, ipMode corev1.LoadBalancerIPMode, ips ...string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := c.client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Status.LoadBalancer.Ingress = nil
		for _, ip := range ips {
			ing := corev1.LoadBalancerIngress{IP: ip}
			if ipMode != "" {
				ing.IPMode = &ipMode
			}
			svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, ing)
		}
		if _, err := c.client.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("service %s/%s load balancer status: %w", ns, name, err)
		}
		return nil
	})
}

// RouteFromExternal makes the external client send traffic for cidr (an
// externalIP or load-balancer IP, either family) to a node, as an upstream
// router or load balancer would.
//
// Like a router, the external client ignores ICMP redirects: a node that
// forwards the first packets before its proxy has programmed the address
// sends them back out eth0 toward the gateway and redirects the client
// there, and a client that obeyed would bypass the node for minutes.
func (c *Cluster) RouteFromExternal(cidr, nodeName string) error {
	n, ok := c.node(nodeName)
	if !ok {
		return fmt.Errorf("no node %q", nodeName)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("route from external: %w", err)
	}
	fam, gw := "ipv4", n.IP
	if p.Addr().Is6() {
		fam, gw = "ipv6", n.IP6
	}
	var kv []string
	for _, dev := range []string{"all", "default", "eth0"} {
		kv = append(kv, "net."+fam+".conf."+dev+".accept_redirects", "0")
	}
	if err := setSysctls(c.extNS, kv...); err != nil {
		return err
	}
	l, err := openNS(c.extNS)
	if err != nil {
		return err
	}
	defer l.Close()
	return l.route(cidr, gw, "eth0", false)
}
