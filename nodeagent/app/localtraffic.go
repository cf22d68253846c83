package app

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// LocalTrafficFlags are kube-proxy's flags for telling traffic from a
// local Pod and for masquerading ClusterIP traffic, as given.
type LocalTrafficFlags struct {
	DetectLocalMode        string // --detect-local-mode
	ClusterCIDR            string // --cluster-cidr, comma-separated
	PodBridgeInterface     string // --pod-bridge-interface
	PodInterfaceNamePrefix string // --pod-interface-name-prefix
	MasqueradeAll          bool   // --masquerade-all
}

// TableOptions checks the flags and turns them into the table's options;
// an error names the flag at fault. Without --detect-local-mode the node's
// Pod CIDRs decide externalTrafficPolicy Local's split and no ClusterIP
// traffic is masqueraded (but with --masquerade-all); a mode given
// masquerades ClusterIP traffic it does not count as from a local Pod.
func (f LocalTrafficFlags) TableOptions() (render.Options, error) {
	if f.DetectLocalMode == "" {
		return render.Options{LocalMode: render.LocalNodeCIDR, MasqueradeAll: f.MasqueradeAll}, nil
	}
	mode, err := render.ParseLocalMode(f.DetectLocalMode)
	if err != nil {
		return render.Options{}, fmt.Errorf("--detect-local-mode: %w", err)
	}
	opts := render.Options{LocalMode: mode, MasqueradeNonLocal: true, MasqueradeAll: f.MasqueradeAll}
	switch mode {
	case render.LocalClusterCIDR:
		if opts.ClusterCIDRs, err = parseClusterCIDRs(f.ClusterCIDR); err != nil {
			return render.Options{}, err
		}
	case render.LocalBridgeInterface:
		if f.PodBridgeInterface == "" {
			return render.Options{}, fmt.Errorf("--detect-local-mode=BridgeInterface needs --pod-bridge-interface")
		}
		opts.Interface = f.PodBridgeInterface
	case render.LocalInterfaceNamePrefix:
		if f.PodInterfaceNamePrefix == "" {
			return render.Options{}, fmt.Errorf("--detect-local-mode=InterfaceNamePrefix needs --pod-interface-name-prefix")
		}
		opts.Interface = f.PodInterfaceNamePrefix
	}
	if err := opts.Validate(); err != nil {
		return render.Options{}, fmt.Errorf("--detect-local-mode=%s: %w", mode, err)
	}
	return opts, nil
}

// parseClusterCIDRs reads --cluster-cidr: one CIDR per family,
// comma-separated.
func parseClusterCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--detect-local-mode=ClusterCIDR needs --cluster-cidr")
	}
	var out []netip.Prefix
	for _, c := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr %q: %w", c, err)
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("--cluster-cidr %q has host bits set (did you mean %s?)", c, p.Masked())
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("--cluster-cidr %q: more than one CIDR of its family (at most one IPv4 and one IPv6)", s)
			}
		}
		out = append(out, p)
	}
	return out, nil
}
