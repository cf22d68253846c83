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
// answer on (see NodePortAddresses), its zone, its Pod CIDRs and whether it
// is going away (being deleted, or tainted by the cluster autoscaler). An
// invalid Node (an IPv4-mapped address or Pod CIDR included) yields an
// error naming it; what it returns passes doormanv1.ValidateNode, the
// agents' check.
func Node(node *corev1.Node, nodePorts NodePortAddresses) (*doormanv1.Node, error) {
	out := &doormanv1.Node{
		Name:        node.Name,
		Zone:        node.Labels[corev1.LabelTopologyZone],
		Deleting:    node.DeletionTimestamp != nil,
		ToBeDeleted: hasTaint(node, ToBeDeletedTaint),
	}
	addrs, err := nodePorts.of(node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.Name, err)
	}
	for _, a := range addrs {
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

// ToBeDeletedTaint is the taint the cluster autoscaler puts on a Node it
// is about to remove; kube-proxy then reports the node not eligible.
const ToBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// hasTaint reports whether the Node carries a taint with key, whatever
// its value and effect.
func hasTaint(node *corev1.Node, key string) bool {
	return slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

// NodePortPrimary is the --nodeport-addresses value that selects each
// node's primary addresses, as kube-proxy's.
const NodePortPrimary = "primary"

// NodePortAddresses is --nodeport-addresses parsed: which of a Node's
// InternalIP and ExternalIP addresses its NodePorts answer on. Primary:
// per family, the first InternalIP, or the first ExternalIP when there is
// none (kube-proxy's node IPs; a loopback one is not used). Otherwise
// those inside one of CIDRs, or every one when CIDRs is empty.
type NodePortAddresses struct {
	Primary bool
	CIDRs   []netip.Prefix
}

// of returns the node's NodePort addresses, sorted and without duplicates.
func (n NodePortAddresses) of(node *corev1.Node) ([]netip.Addr, error) {
	var internal, external []netip.Addr
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, _, err := parseIP(a.Address)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Type, err)
		}
		if a.Type == corev1.NodeInternalIP {
			internal = append(internal, ip)
		} else {
			external = append(external, ip)
		}
	}
	all := append(internal, external...)
	var addrs []netip.Addr
	switch {
	case n.Primary:
		addrs = primaryAddrs(all)
	case len(n.CIDRs) > 0:
		for _, ip := range all {
			if slices.ContainsFunc(n.CIDRs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
				addrs = append(addrs, ip)
			}
		}
	default:
		addrs = all
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), nil
}

// primaryAddrs returns the first address of each family in ordered (the
// InternalIPs, then the ExternalIPs), leaving out a loopback one.
func primaryAddrs(ordered []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, is4 := range []bool{true, false} {
		i := slices.IndexFunc(ordered, func(a netip.Addr) bool { return a.Is4() == is4 })
		if i >= 0 && !ordered[i].IsLoopback() {
			out = append(out, ordered[i])
		}
	}
	return out
}

// ParseNodePortAddresses parses --nodeport-addresses: either "primary"
// alone, or CIDRs.
func ParseNodePortAddresses(in []string) (NodePortAddresses, error) {
	if slices.Contains(in, NodePortPrimary) {
		if len(in) > 1 {
			return NodePortAddresses{}, fmt.Errorf("nodeport addresses: %q must be the only value, got %q", NodePortPrimary, in)
		}
		return NodePortAddresses{Primary: true}, nil
	}
	var out NodePortAddresses
	for _, c := range in {
		p, err := doormanv1.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return NodePortAddresses{}, fmt.Errorf("nodeport address range: %w", err)
		}
		out.CIDRs = append(out.CIDRs, p.Masked())
	}
	return out, nil
}
