package render

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
)

// localModeOptions is one Options per local traffic mode given (which
// masquerades ClusterIP traffic not from a local Pod), the default (no mode
// given), and --masquerade-all, for the table tests.
var localModeOptions = map[string]Options{
	"Default":             {},
	"NodeCIDR":            {MasqueradeNonLocal: true},
	"ClusterCIDR":         {LocalMode: LocalClusterCIDR, MasqueradeNonLocal: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}},
	"ClusterCIDR-v4only":  {LocalMode: LocalClusterCIDR, MasqueradeNonLocal: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}},
	"BridgeInterface":     {LocalMode: LocalBridgeInterface, MasqueradeNonLocal: true, Interface: "cni0"},
	"InterfaceNamePrefix": {LocalMode: LocalInterfaceNamePrefix, MasqueradeNonLocal: true, Interface: "veth"},
	"MasqueradeAll":       {LocalMode: LocalBridgeInterface, MasqueradeNonLocal: true, Interface: "cni0", MasqueradeAll: true},
}

// TestLocalModeRules checks the rules each mode puts where "from a local
// Pod" matters: the ClusterIP masquerade ahead of the services dispatch
// and externalTrafficPolicy Local's internal/external split.
func TestLocalModeRules(t *testing.T) {
	const (
		dispatch4 = "ip daddr . meta l4proto . th dport vmap @service-ips"
		fromNode  = "fib saddr type local meta mark set meta mark | 0x00004000"
	)
	tests := map[string]struct {
		services, localIPs, localNodePorts []string // the rules before the dispatch / before the node's own
	}{
		// No mode given: the node's Pod CIDRs split externalTrafficPolicy
		// Local, and no ClusterIP traffic is masqueraded.
		"Default": {
			services: []string{},
			localIPs: []string{
				"ip saddr @pod-cidrs ip daddr . meta l4proto . th dport vmap @local-internal-ips",
				"ip6 saddr @pod-cidrs6 ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6",
			},
			localNodePorts: []string{
				"ip saddr @pod-cidrs meta l4proto . th dport vmap @local-internal-nodeports",
				"ip6 saddr @pod-cidrs6 meta l4proto . th dport vmap @local-internal-nodeports6",
			},
		},
		"NodeCIDR": {
			services: []string{
				"ip daddr @cluster-ips ip saddr != @pod-cidrs meta mark set meta mark | 0x00004000",
				"ip6 daddr @cluster-ips6 ip6 saddr != @pod-cidrs6 meta mark set meta mark | 0x00004000",
			},
			localIPs: []string{
				"ip saddr @pod-cidrs ip daddr . meta l4proto . th dport vmap @local-internal-ips",
				"ip6 saddr @pod-cidrs6 ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6",
			},
			localNodePorts: []string{
				"ip saddr @pod-cidrs meta l4proto . th dport vmap @local-internal-nodeports",
				"ip6 saddr @pod-cidrs6 meta l4proto . th dport vmap @local-internal-nodeports6",
			},
		},
		"ClusterCIDR": {
			services: []string{
				"ip daddr @cluster-ips ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x00004000",
				"ip6 daddr @cluster-ips6 ip6 saddr != fd00:10:244::/56 meta mark set meta mark | 0x00004000",
			},
			localIPs: []string{
				"ip saddr 10.244.0.0/16 ip daddr . meta l4proto . th dport vmap @local-internal-ips",
				"ip6 saddr fd00:10:244::/56 ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6",
			},
			localNodePorts: []string{
				"ip saddr 10.244.0.0/16 meta l4proto . th dport vmap @local-internal-nodeports",
				"ip6 saddr fd00:10:244::/56 meta l4proto . th dport vmap @local-internal-nodeports6",
			},
		},
		// A family without a cluster CIDR has no local test, as kube-proxy's
		// no-op detector: no split, no masquerade.
		"ClusterCIDR-v4only": {
			services:       []string{"ip daddr @cluster-ips ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x00004000"},
			localIPs:       []string{"ip saddr 10.244.0.0/16 ip daddr . meta l4proto . th dport vmap @local-internal-ips"},
			localNodePorts: []string{"ip saddr 10.244.0.0/16 meta l4proto . th dport vmap @local-internal-nodeports"},
		},
		"BridgeInterface": {
			services: []string{
				`ip daddr @cluster-ips iifname != "cni0" meta mark set meta mark | 0x00004000`,
				`ip6 daddr @cluster-ips6 iifname != "cni0" meta mark set meta mark | 0x00004000`,
			},
			localIPs: []string{
				`iifname "cni0" ip daddr . meta l4proto . th dport vmap @local-internal-ips`,
				`iifname "cni0" ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6`,
			},
			localNodePorts: []string{
				`meta nfproto ipv4 iifname "cni0" meta l4proto . th dport vmap @local-internal-nodeports`,
				`meta nfproto ipv6 iifname "cni0" meta l4proto . th dport vmap @local-internal-nodeports6`,
			},
		},
		"InterfaceNamePrefix": {
			services: []string{
				`ip daddr @cluster-ips iifname != "veth*" meta mark set meta mark | 0x00004000`,
				`ip6 daddr @cluster-ips6 iifname != "veth*" meta mark set meta mark | 0x00004000`,
			},
			localIPs: []string{
				`iifname "veth*" ip daddr . meta l4proto . th dport vmap @local-internal-ips`,
				`iifname "veth*" ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6`,
			},
			localNodePorts: []string{
				`meta nfproto ipv4 iifname "veth*" meta l4proto . th dport vmap @local-internal-nodeports`,
				`meta nfproto ipv6 iifname "veth*" meta l4proto . th dport vmap @local-internal-nodeports6`,
			},
		},
		"MasqueradeAll": {
			services: []string{
				"ip daddr @cluster-ips meta mark set meta mark | 0x00004000",
				"ip6 daddr @cluster-ips6 meta mark set meta mark | 0x00004000",
			},
			localIPs: []string{
				`iifname "cni0" ip daddr . meta l4proto . th dport vmap @local-internal-ips`,
				`iifname "cni0" ip6 daddr . meta l4proto . th dport vmap @local-internal-ips6`,
			},
			localNodePorts: []string{
				`meta nfproto ipv4 iifname "cni0" meta l4proto . th dport vmap @local-internal-nodeports`,
				`meta nfproto ipv6 iifname "cni0" meta l4proto . th dport vmap @local-internal-nodeports6`,
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			opts := localModeOptions[name]
			if err := opts.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			chains := map[string][]string{}
			for _, c := range opts.View(kindsView()).Chains {
				for _, r := range c.Rules {
					chains[c.Name] = append(chains[c.Name], r.Text)
				}
			}
			for _, check := range []struct {
				chain, before string
				want          []string
			}{
				{ChainServices, dispatch4, tt.services},
				{ChainLocalIPs, fromNode, tt.localIPs},
				{ChainLocalNodePorts, fromNode, tt.localNodePorts},
			} {
				if diff := cmp.Diff(check.want, rulesBefore(chains[check.chain], check.before)); diff != "" {
					t.Errorf("chain %s, rules before %q (-want +got):\n%s", check.chain, check.before, diff)
				}
			}
		})
	}
}

func rulesBefore(rules []string, stop string) []string {
	for i, r := range rules {
		if r == stop {
			return rules[:i]
		}
	}
	return rules
}

// TestLocalTestExprs checks what the kernel runs for each test: an exact
// interface name is compared NUL-padded to IFNAMSIZ, a prefix over its own
// length, a CIDR under its mask, the node's Pod CIDRs by set lookup.
func TestLocalTestExprs(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		negate bool
		want   []expr.Any
	}{
		{"bridge", localModeOptions["BridgeInterface"], false, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte("cni0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")},
		}},
		{"prefix negated", localModeOptions["InterfaceNamePrefix"], true, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte("veth")},
		}},
		{"cluster CIDR", localModeOptions["ClusterCIDR"], true, []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{10, 244, 0, 0}},
		}},
		{"node CIDR negated", Options{}, true, []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Lookup{SourceRegister: reg1, SetName: SetPodCIDRs, Invert: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.opts.fromPods(fam4, tt.negate)
			if !ok {
				t.Fatal("no test")
			}
			if diff := cmp.Diff(tt.want, got.exprs); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"default", Options{}, true},
		{"cluster CIDR dual-stack", localModeOptions["ClusterCIDR"], true},
		{"cluster CIDR missing", Options{LocalMode: LocalClusterCIDR}, false},
		{"cluster CIDR host bits", Options{LocalMode: LocalClusterCIDR, ClusterCIDRs: []netip.Prefix{p("10.244.1.1/16")}}, false},
		{"two of a family", Options{LocalMode: LocalClusterCIDR, ClusterCIDRs: []netip.Prefix{p("10.244.0.0/16"), p("10.245.0.0/16")}}, false},
		{"bridge missing", Options{LocalMode: LocalBridgeInterface}, false},
		{"prefix missing", Options{LocalMode: LocalInterfaceNamePrefix}, false},
		{"name too long", Options{LocalMode: LocalBridgeInterface, Interface: "a-very-long-name0"}, false},
		{"unknown mode", Options{LocalMode: LocalMode(9)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.opts.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestParseLocalMode(t *testing.T) {
	for _, m := range []LocalMode{LocalNodeCIDR, LocalClusterCIDR, LocalBridgeInterface, LocalInterfaceNamePrefix} {
		got, err := ParseLocalMode(m.String())
		if err != nil || got != m {
			t.Errorf("ParseLocalMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseLocalMode("nodecidr"); err == nil {
		t.Error("ParseLocalMode accepted a misspelt mode")
	}
}
