package render

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// LocalMode is how the table tells traffic from a Pod of this node from
// other traffic, as kube-proxy's --detect-local-mode does. It decides
// externalTrafficPolicy Local's split (Pods count as inside the cluster)
// and which ClusterIP traffic is masqueraded (what is not from a Pod).
type LocalMode int

const (
	// LocalNodeCIDR: the source is in the node's Pod CIDRs (pod-cidrs,
	// from the Node entry).
	LocalNodeCIDR LocalMode = iota
	// LocalClusterCIDR: the source is in the cluster's Pod CIDR of its
	// family (Options.ClusterCIDRs).
	LocalClusterCIDR
	// LocalBridgeInterface: the packet arrived on the Pods' bridge
	// (Options.Interface).
	LocalBridgeInterface
	// LocalInterfaceNamePrefix: the packet arrived on an interface whose
	// name starts with Options.Interface.
	LocalInterfaceNamePrefix
)

var localModeNames = [...]string{"NodeCIDR", "ClusterCIDR", "BridgeInterface", "InterfaceNamePrefix"}

// String is the mode as kube-proxy spells it.
func (m LocalMode) String() string {
	if m < 0 || int(m) >= len(localModeNames) {
		return fmt.Sprintf("LocalMode(%d)", int(m))
	}
	return localModeNames[m]
}

// ParseLocalMode reads a mode as kube-proxy spells it.
func ParseLocalMode(s string) (LocalMode, error) {
	for i, n := range localModeNames {
		if n == s {
			return LocalMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown local traffic mode %q (want one of %s)", s, strings.Join(localModeNames[:], ", "))
}

// Options shape the static part of the table. The zero value is doorman's
// default: local traffic by the node's Pod CIDRs for externalTrafficPolicy
// Local, and no ClusterIP traffic masqueraded (as kube-proxy without a
// local traffic mode: a cluster whose Pod addresses are not in its Nodes'
// spec.podCIDRs keeps its Pods' source addresses).
type Options struct {
	LocalMode LocalMode
	// MasqueradeNonLocal masquerades ClusterIP traffic the mode does not
	// count as from a local Pod (a client outside the cluster routed to a
	// ClusterIP, the node itself), so its replies come back through this
	// node, as kube-proxy does once a mode is configured.
	MasqueradeNonLocal bool
	// ClusterCIDRs, for LocalClusterCIDR: at most one prefix per family; a
	// family without one has no local traffic test (nothing counts as from
	// a Pod, and nothing is masqueraded for not being from one).
	ClusterCIDRs []netip.Prefix
	// Interface is the bridge (LocalBridgeInterface) or the name prefix
	// (LocalInterfaceNamePrefix).
	Interface string
	// MasqueradeAll masquerades all ClusterIP traffic, as kube-proxy's
	// --masquerade-all.
	MasqueradeAll bool
	// LocalhostNodePorts serves NodePorts on 127.0.0.0/8 to the node's own
	// processes, as kube-proxy's --iptables-localhost-nodeports (IPv4
	// only; needs route_localnet, see localhost.go).
	LocalhostNodePorts bool
}

// ifNameSize is IFNAMSIZ: an interface name and its NUL.
const ifNameSize = unix.IFNAMSIZ

// Validate reports options the table cannot be built from.
func (o Options) Validate() error {
	switch o.LocalMode {
	case LocalNodeCIDR:
	case LocalClusterCIDR:
		if len(o.ClusterCIDRs) == 0 {
			return errors.New("ClusterCIDR local traffic mode needs a cluster CIDR")
		}
		var seen [2]bool
		for _, p := range o.ClusterCIDRs {
			if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				return fmt.Errorf("cluster CIDR %q is not a CIDR", p)
			}
			if p.Masked() != p {
				return fmt.Errorf("cluster CIDR %s has host bits set (%s)", p, p.Masked())
			}
			i := 0
			if p.Addr().Is6() {
				i = 1
			}
			if seen[i] {
				return fmt.Errorf("cluster CIDR %s: more than one of its family", p)
			}
			seen[i] = true
		}
	case LocalBridgeInterface, LocalInterfaceNamePrefix:
		if o.Interface == "" || len(o.Interface) >= ifNameSize || strings.ContainsAny(o.Interface, "\x00/ \t\n") {
			return fmt.Errorf("%s local traffic mode: %q is not an interface name", o.LocalMode, o.Interface)
		}
	default:
		return fmt.Errorf("unknown local traffic mode %d", int(o.LocalMode))
	}
	return nil
}

// localTest matches (or, negated, does not match) traffic from a Pod of
// this node in one family: expressions ending in a verdict-free match, and
// their nft text.
type localTest struct {
	exprs []expr.Any
	text  string
}

// fromPods is the mode's test in family f; false when the mode has none
// in f (ClusterCIDR without a CIDR of that family). By mode:
//
//	NodeCIDR:            ip saddr @pod-cidrs            ip saddr != @pod-cidrs
//	ClusterCIDR:         ip saddr 10.244.0.0/16         ip saddr != 10.244.0.0/16
//	BridgeInterface:     iifname "cni0"                 iifname != "cni0"
//	InterfaceNamePrefix: iifname "veth*"                iifname != "veth*"
func (o Options) fromPods(f fam, negate bool) (localTest, bool) {
	not := ""
	if negate {
		not = "!= "
	}
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	switch o.LocalMode {
	case LocalClusterCIDR:
		p, ok := o.clusterCIDR(f)
		if !ok {
			return localTest{}, false
		}
		return localTest{
			exprs: []expr.Any{
				&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
				&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: f.addrLen, Mask: prefixMask(p), Xor: make([]byte, f.addrLen)},
				&expr.Cmp{Op: op, Register: reg1, Data: p.Addr().AsSlice()},
			},
			text: fmt.Sprintf("%s saddr %s%s", f.name, not, p),
		}, true
	case LocalBridgeInterface:
		name := make([]byte, ifNameSize)
		copy(name, o.Interface)
		return localTest{
			exprs: []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1}, &expr.Cmp{Op: op, Register: reg1, Data: name}},
			text:  fmt.Sprintf("iifname %s%q", not, o.Interface),
		}, true
	case LocalInterfaceNamePrefix:
		return localTest{
			exprs: []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1}, &expr.Cmp{Op: op, Register: reg1, Data: []byte(o.Interface)}},
			text:  fmt.Sprintf("iifname %s%q", not, o.Interface+"*"),
		}, true
	}
	set := SetPodCIDRs
	if f.nfproto == unix.NFPROTO_IPV6 {
		set = SetPodCIDRs6
	}
	return localTest{
		exprs: []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
			&expr.Lookup{SourceRegister: reg1, SetName: set, Invert: negate},
		},
		text: fmt.Sprintf("%s saddr %s@%s", f.name, not, set),
	}, true
}

func (o Options) clusterCIDR(f fam) (netip.Prefix, bool) {
	for _, p := range o.ClusterCIDRs {
		if p.Addr().Is6() == (f.nfproto == unix.NFPROTO_IPV6) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// prefixMask is the netmask of p's length, as many bytes as p's address.
func prefixMask(p netip.Prefix) []byte {
	m := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// fromPodsRules are the local tests leading externalTrafficPolicy Local's
// dispatch to the internal map, one per family that has a test: for
// addresses (local-ips),
//
//	ip saddr @pod-cidrs ip daddr . meta l4proto . th dport vmap @local-internal-ips
//
// and for NodePorts (local-nodeports, byPort),
//
//	ip saddr @pod-cidrs meta l4proto . th dport vmap @local-internal-nodeports
//
// with the mode's test in place of "ip saddr @pod-cidrs".
func (o Options) fromPodsRules(byPort bool, set4, set6 string) []Rule {
	var rules []Rule
	for _, fs := range []struct {
		f   fam
		set string
	}{{fam4, set4}, {fam6, set6}} {
		test, ok := o.fromPods(fs.f, false)
		if !ok {
			continue
		}
		exprs := append(fs.f.nfprotoIs(), test.exprs...)
		if byPort {
			text := test.text
			if o.LocalMode == LocalBridgeInterface || o.LocalMode == LocalInterfaceNamePrefix {
				text = "meta nfproto " + fs.f.nfprotoName() + " " + text // an address test implies its family
			}
			rules = append(rules, Rule{
				Text:  fmt.Sprintf("%s meta l4proto . th dport vmap @%s", text, fs.set),
				Exprs: append(exprs, portVmap(fs.set)...),
			})
			continue
		}
		rules = append(rules, Rule{
			Text:  fmt.Sprintf("%s %s daddr . meta l4proto . th dport vmap @%s", test.text, fs.f.name, fs.set),
			Exprs: append(exprs, fs.f.addrPortVmap(fs.set)...),
		})
	}
	return rules
}

// clusterIPMasqRules ask for ClusterIP traffic to be masqueraded, ahead
// of the dispatch in the services chain, one per family (none without
// MasqueradeAll or MasqueradeNonLocal): all of it with MasqueradeAll,
//
//	ip daddr @cluster-ips meta mark set meta mark | 0x00004000
//
// else what is not from a Pod of this node (a client outside the cluster
// routed to a ClusterIP, or the node itself), so its replies come back
// through this node whichever node the endpoint is on:
//
//	ip daddr @cluster-ips ip saddr != @pod-cidrs meta mark set meta mark | 0x00004000
func (o Options) clusterIPMasqRules() []Rule {
	if !o.MasqueradeAll && !o.MasqueradeNonLocal {
		return nil
	}
	var rules []Rule
	for _, fs := range []struct {
		f   fam
		set string
	}{{fam4, SetClusterIPs}, {fam6, SetClusterIPs6}} {
		exprs := append(fs.f.nfprotoIs(), fs.f.daddr(), lookup(fs.set))
		text := fmt.Sprintf("%s daddr @%s ", fs.f.name, fs.set)
		if !o.MasqueradeAll {
			test, ok := o.fromPods(fs.f, true)
			if !ok {
				continue
			}
			exprs = append(exprs, test.exprs...)
			text += test.text + " "
		}
		mark := setMasqMarkRule()
		rules = append(rules, Rule{Text: text + mark.Text, Exprs: append(exprs, mark.Exprs...)})
	}
	return rules
}
