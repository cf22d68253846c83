package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Node computes a node's "node" entry: its name, the addresses NodePorts
// answer on (InternalIP and ExternalIP, kept only when inside one of
// nodePortCIDRs if any are given), its zone and its Pod CIDRs. An invalid
// Node (an IPv4-mapped address or Pod CIDR included) yields an error naming
// it; what it returns passes doormanv1.ValidateNode, the agents' check.
func Node(node *corev1.Node, nodePortCIDRs []netip.Prefix) (*doormanv1.Node, error) {
	out := &doormanv1.Node{Name: node.Name, Zone: node.Labels[corev1.LabelTopologyZone]}
	var addrs []netip.Addr
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, _, err := parseIP(a.Address)
		if err != nil {
			return nil, fmt.Errorf("node %s: %s: %w", node.Name, a.Type, err)
		}
		if len(nodePortCIDRs) > 0 && !slices.ContainsFunc(nodePortCIDRs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			continue
		}
		addrs = append(addrs, ip)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range slices.Compact(addrs) {
		out.NodeportAddresses = append(out.NodeportAddresses, a.String())
	}
	cidrs := node.Spec.PodCIDRs
	if len(cidrs) == 0 && node.Spec.PodCIDR != "" {
		cidrs = []string{node.Spec.PodCIDR}
	}
	var prefixes []netip.Prefix
	for _, c := range cidrs {
		p, err := doormanv1.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("node %s: podCIDRs: %w", node.Name, err)
		}
		prefixes = append(prefixes, p.Masked())
	}
	for _, fam := range []doormanv1.IPFamily{doormanv1.IPFamily_IP_FAMILY_IPV4, doormanv1.IPFamily_IP_FAMILY_IPV6} {
		out.PodCidrs = append(out.PodCidrs, prefixesOf(prefixes, fam)...)
	}
	if err := doormanv1.ValidateNode(out); err != nil {
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	return out, nil
}

// ParseCIDRs parses --nodeport-addresses.
func ParseCIDRs(in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range in {
		p, err := doormanv1.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("nodeport address range: %w", err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
