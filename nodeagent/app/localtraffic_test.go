package app

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

func TestLocalTrafficFlags(t *testing.T) {
	tests := []struct {
		name    string
		flags   LocalTrafficFlags
		want    render.Options
		wantErr string // a part of the error: the flag at fault
	}{
		{name: "default", flags: LocalTrafficFlags{}, want: render.Options{}},
		{name: "default, masquerade all", flags: LocalTrafficFlags{MasqueradeAll: true}, want: render.Options{MasqueradeAll: true}},
		{name: "node CIDR", flags: LocalTrafficFlags{DetectLocalMode: "NodeCIDR"}, want: render.Options{MasqueradeNonLocal: true}},
		{name: "masquerade all", flags: LocalTrafficFlags{DetectLocalMode: "NodeCIDR", MasqueradeAll: true}, want: render.Options{MasqueradeNonLocal: true, MasqueradeAll: true}},
		{name: "cluster CIDR dual-stack", flags: LocalTrafficFlags{DetectLocalMode: "ClusterCIDR", ClusterCIDR: "10.244.0.0/16, fd00:10:244::/56"},
			want: render.Options{LocalMode: render.LocalClusterCIDR, MasqueradeNonLocal: true, ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}}},
		{name: "bridge", flags: LocalTrafficFlags{DetectLocalMode: "BridgeInterface", PodBridgeInterface: "cni0"},
			want: render.Options{LocalMode: render.LocalBridgeInterface, MasqueradeNonLocal: true, Interface: "cni0"}},
		{name: "prefix", flags: LocalTrafficFlags{DetectLocalMode: "InterfaceNamePrefix", PodInterfaceNamePrefix: "veth"},
			want: render.Options{LocalMode: render.LocalInterfaceNamePrefix, MasqueradeNonLocal: true, Interface: "veth"}},
		{name: "unknown mode", flags: LocalTrafficFlags{DetectLocalMode: "PodCIDR"}, wantErr: "--detect-local-mode"},
		{name: "cluster CIDR missing", flags: LocalTrafficFlags{DetectLocalMode: "ClusterCIDR"}, wantErr: "--cluster-cidr"},
		{name: "cluster CIDR malformed", flags: LocalTrafficFlags{DetectLocalMode: "ClusterCIDR", ClusterCIDR: "10.244.0.0/33"}, wantErr: "--cluster-cidr"},
		{name: "cluster CIDR host bits", flags: LocalTrafficFlags{DetectLocalMode: "ClusterCIDR", ClusterCIDR: "10.244.1.0/16"}, wantErr: "--cluster-cidr"},
		{name: "cluster CIDR two of a family", flags: LocalTrafficFlags{DetectLocalMode: "ClusterCIDR", ClusterCIDR: "10.244.0.0/16,10.245.0.0/16"}, wantErr: "--cluster-cidr"},
		{name: "bridge missing", flags: LocalTrafficFlags{DetectLocalMode: "BridgeInterface"}, wantErr: "--pod-bridge-interface"},
		{name: "prefix missing", flags: LocalTrafficFlags{DetectLocalMode: "InterfaceNamePrefix", PodBridgeInterface: "cni0"}, wantErr: "--pod-interface-name-prefix"},
		{name: "bridge name too long", flags: LocalTrafficFlags{DetectLocalMode: "BridgeInterface", PodBridgeInterface: "a-very-long-name0"}, wantErr: "BridgeInterface"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.flags.TableOptions()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("TableOptions() error = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("TableOptions: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Prefix{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
