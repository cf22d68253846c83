package render

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

const (
	tcp  = doormanv1.Protocol_PROTOCOL_TCP
	udp  = doormanv1.Protocol_PROTOCOL_UDP
	ipv4 = doormanv1.IPFamily_IP_FAMILY_IPV4
	ipv6 = doormanv1.IPFamily_IP_FAMILY_IPV6
)

func ep(ip string, port uint32) *doormanv1.Endpoint {
	return &doormanv1.Endpoint{Ip: ip, Port: port}
}

func spEntry(sp *doormanv1.ServicePort) *doormanv1.Entry {
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func nodeEntry(addrs ...string) *doormanv1.Entry {
	return &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "node1", NodeportAddresses: addrs}}}
}

func viewOf(entries ...*doormanv1.Entry) map[string]*doormanv1.Entry {
	m := make(map[string]*doormanv1.Entry, len(entries))
	for _, e := range entries {
		m[e.GetKey()] = e
	}
	return m
}

// smallView: two ClusterIP Services (one with two ports), a NodePort
// Service, a Service without endpoints (with a NodePort) and an IPv6
// Service.
func smallView() map[string]*doormanv1.Entry {
	return viewOf(
		nodeEntry("192.168.1.10", "fd00:1::10"),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "web", PortName: "http", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.0.10", Port: 80, Endpoints: []*doormanv1.Endpoint{ep("10.244.1.5", 8080), ep("10.244.2.7", 8080)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "web", PortName: "https", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.0.10", Port: 443, Endpoints: []*doormanv1.Endpoint{ep("10.244.1.5", 8443), ep("10.244.2.7", 8443)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "kube-system", Name: "dns", Protocol: udp, Family: ipv4,
			ClusterIp: "10.96.0.53", Port: 53, Endpoints: []*doormanv1.Endpoint{ep("10.244.1.2", 53)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "shop", Name: "front", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.5.1", Port: 80, NodePort: 30080,
			Endpoints: []*doormanv1.Endpoint{ep("10.244.1.9", 80), ep("10.244.2.9", 80), ep("10.244.3.9", 80)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "shop", Name: "empty", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.7.7", Port: 8080, NodePort: 30999}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "web6", Protocol: tcp, Family: ipv6,
			ClusterIp: "fd00:96::10", Port: 80, Endpoints: []*doormanv1.Endpoint{ep("fd00:244:1::5", 8080), ep("fd00:244:2::7", 8080)}}),
	)
}

// kindsView: one Service of every kind — externalIPs and LoadBalancer IPs
// with source ranges (Cluster policy), externalTrafficPolicy Local with and
// without local endpoints (NodePort, externalIP, LB IP, IPv4 and IPv6),
// session affinity (ClusterIP and NodePort), internalTrafficPolicy Local
// without endpoints, and with external addresses served from the
// cluster-wide endpoints.
func kindsView() map[string]*doormanv1.Entry {
	node := nodeEntry("192.168.1.10", "fd00:1::10")
	node.GetNode().PodCidrs = []string{"10.244.1.0/24", "fd00:244:1::/64"}
	node.GetNode().ServiceCidrs = []string{"10.96.0.0/16", "fd00:96::/108"}
	return viewOf(
		node,
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "lb", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.1.1", Port: 80, NodePort: 30001,
			ExternalIps: []string{"192.0.2.10"}, LoadBalancerIps: []string{"198.51.100.10"},
			LoadBalancerSourceRanges: []string{"203.0.113.0/24", "10.1.2.3/32"},
			Endpoints:                []*doormanv1.Endpoint{ep("10.244.1.5", 8080), ep("10.244.2.7", 8080)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "local", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.2.2", Port: 80, NodePort: 30002, ExternalIps: []string{"192.0.2.20"},
			ExternalPolicyLocal: true, HealthCheckNodePort: 32000,
			Endpoints:      []*doormanv1.Endpoint{ep("10.244.1.6", 8080), ep("10.244.2.8", 8080)},
			LocalEndpoints: []*doormanv1.Endpoint{ep("10.244.1.6", 8080)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "local-none", Protocol: udp, Family: ipv4,
			ClusterIp: "10.96.3.3", Port: 53, NodePort: 30003, LoadBalancerIps: []string{"198.51.100.30"},
			ExternalPolicyLocal: true, HealthCheckNodePort: 32001,
			Endpoints: []*doormanv1.Endpoint{ep("10.244.2.9", 53)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "sticky", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.4.4", Port: 80, NodePort: 30004, AffinityTimeoutSeconds: 10800,
			Endpoints: []*doormanv1.Endpoint{ep("10.244.1.10", 80), ep("10.244.2.10", 80), ep("10.244.3.10", 80)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "node-local", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.5.5", Port: 80, InternalPolicyLocal: true}),
		// internalTrafficPolicy Local with external addresses: ClusterIP
		// traffic only to this node's endpoints (none here: dropped),
		// NodePort and externalIP traffic to the cluster-wide set.
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "node-local-np", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.7.7", Port: 80, NodePort: 30007, ExternalIps: []string{"192.0.2.70"}, InternalPolicyLocal: true,
			ClusterEndpoints: []*doormanv1.Endpoint{ep("10.244.2.11", 80), ep("10.244.3.11", 80)}}),
		// Both policies Local: ClusterIP and outside traffic to the local
		// endpoint, traffic from inside to the NodePort to every endpoint.
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "node-local-both", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.8.8", Port: 80, NodePort: 30008, InternalPolicyLocal: true, ExternalPolicyLocal: true,
			HealthCheckNodePort: 32008, AffinityTimeoutSeconds: 30,
			Endpoints:        []*doormanv1.Endpoint{ep("10.244.1.12", 80)},
			LocalEndpoints:   []*doormanv1.Endpoint{ep("10.244.1.12", 80)},
			ClusterEndpoints: []*doormanv1.Endpoint{ep("10.244.1.12", 80), ep("10.244.2.12", 80)}}),
		// internalTrafficPolicy Local, external addresses, no endpoint
		// anywhere: every frontend rejects.
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "node-local-gone", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.9.9", Port: 80, NodePort: 30009, InternalPolicyLocal: true}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "lb6", Protocol: tcp, Family: ipv6,
			ClusterIp: "fd00:96::6", Port: 443, NodePort: 30006, LoadBalancerIps: []string{"2001:db8::6"},
			LoadBalancerSourceRanges: []string{"2001:db8:1::/48"}, ExternalPolicyLocal: true, AffinityTimeoutSeconds: 60,
			Endpoints:      []*doormanv1.Endpoint{ep("fd00:244:1::6", 8443), ep("fd00:244:2::6", 8443)},
			LocalEndpoints: []*doormanv1.Endpoint{ep("fd00:244:1::6", 8443)}}),
	)
}

// rangesView: overlapping and touching CIDRs, as the API server accepts
// them, in the interval sets: Pod CIDRs of the Node, Service CIDRs (two
// ServiceCIDR objects may overlap) and loadBalancerSourceRanges, each
// merged into one interval.
func rangesView() map[string]*doormanv1.Entry {
	node := nodeEntry("192.168.1.10")
	node.GetNode().PodCidrs = []string{"10.244.1.0/24", "10.244.1.128/25", "10.244.2.0/24", "fd00:244:1::/64", "fd00:244:1::/64"}
	node.GetNode().ServiceCidrs = []string{"10.96.0.0/16", "10.96.128.0/24", "10.97.0.0/16", "10.100.0.0/24", "fd00:96::/108", "fd00:96::/112"}
	return viewOf(
		node,
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "lb", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.1.1", Port: 80, LoadBalancerIps: []string{"198.51.100.10"},
			LoadBalancerSourceRanges: []string{"10.250.0.0/16", "10.0.0.0/8", "192.168.0.0/24", "192.168.1.0/24", "203.0.113.7/32"},
			Endpoints:                []*doormanv1.Endpoint{ep("10.244.1.5", 8080)}}),
		spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "lb6", Protocol: tcp, Family: ipv6,
			ClusterIp: "fd00:96::6", Port: 443, LoadBalancerIps: []string{"2001:db8::6"},
			LoadBalancerSourceRanges: []string{"2001:db8:1::/48", "2001:db8:1:2::/64", "::/0"},
			Endpoints:                []*doormanv1.Endpoint{ep("fd00:244:1::6", 8443)}}),
	)
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		view map[string]*doormanv1.Entry
	}{
		{"empty", viewOf(nodeEntry())},
		{"small", smallView()},
		{"kinds", kindsView()},
		{"ranges", rangesView()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table := View(tc.view)
			if len(table.Invalid) != 0 || len(table.Refused) != 0 {
				t.Fatalf("invalid entries: %v; refused: %v", table.Invalid, table.Refused)
			}
			got := table.String()
			path := filepath.Join("testdata", tc.name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("table text differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestDispatchIsStatic checks what the golden file shows: no chain or rule
// mentions a Service; adding Services adds only elements.
func TestDispatchIsStatic(t *testing.T) {
	small := View(smallView())
	empty := View(viewOf(nodeEntry()))
	for _, c := range small.Chains {
		if _, ok := EndpointChain(c.Name); ok {
			continue
		}
		for _, r := range c.Rules {
			for _, s := range []string{"10.96.", "fd00:96", "30080", "web"} {
				if strings.Contains(r.Text, s) {
					t.Errorf("chain %s rule %q names a Service (%s)", c.Name, r.Text, s)
				}
			}
		}
	}
	if got, want := len(small.Chains)-len(empty.Chains), 4; got != want {
		// service-1, service-2, service-3 (K chains), nodeport-3
		t.Errorf("small view has %d chains beyond the static ones, want %d (one per endpoint count in use)", got, want)
	}
}

func TestEntryErrors(t *testing.T) {
	base := func() *doormanv1.ServicePort {
		return &doormanv1.ServicePort{Namespace: "ns", Name: "svc", Protocol: tcp, Family: ipv4, ClusterIp: "10.96.0.1", Port: 80,
			Endpoints: []*doormanv1.Endpoint{ep("10.244.0.1", 80)}}
	}
	tests := []struct {
		name   string
		mutate func(*doormanv1.ServicePort)
		want   string
	}{
		{"no family", func(sp *doormanv1.ServicePort) { sp.Family = 0 }, "IP family"},
		{"no protocol", func(sp *doormanv1.ServicePort) { sp.Protocol = 0 }, "protocol"},
		{"port 0", func(sp *doormanv1.ServicePort) { sp.Port = 0 }, "port 0 out of range"},
		{"nodePort too big", func(sp *doormanv1.ServicePort) { sp.NodePort = 70000 }, "nodePort 70000"},
		{"bad clusterIP", func(sp *doormanv1.ServicePort) { sp.ClusterIp = "10.96.0" }, "clusterIP"},
		{"v6 clusterIP in v4 entry", func(sp *doormanv1.ServicePort) { sp.ClusterIp = "fd00::1" }, "not an address of the entry's family"},
		{"v6 endpoint in v4 entry", func(sp *doormanv1.ServicePort) { sp.Endpoints[0].Ip = "fd00::1" }, `endpoint "fd00::1"`},
		{"endpoint port 0", func(sp *doormanv1.ServicePort) { sp.Endpoints[0].Port = 0 }, "endpoint port 0"},
		// IPv4-mapped forms are refused, as the shared validator refuses
		// them, never unmapped into an address that was not sent.
		{"IPv4-mapped clusterIP in v4 entry", func(sp *doormanv1.ServicePort) { sp.ClusterIp = "::ffff:10.96.0.1" }, `"::ffff:10.96.0.1": zones and IPv4-mapped`},
		{"IPv4-mapped endpoint in v4 entry", func(sp *doormanv1.ServicePort) { sp.Endpoints[0].Ip = "::ffff:10.244.0.1" }, "IPv4-mapped"},
		{"IPv4-mapped external IP in v4 entry", func(sp *doormanv1.ServicePort) { sp.ExternalIps = []string{"::ffff:192.0.2.1"} }, "IPv4-mapped"},
		{"IPv4-mapped source range in v6 entry", func(sp *doormanv1.ServicePort) {
			sp.Family, sp.ClusterIp, sp.Endpoints = ipv6, "fd00::1", nil
			sp.LoadBalancerIps = []string{"2001:db8::1"}
			sp.LoadBalancerSourceRanges = []string{"::ffff:10.0.0.0/104"}
		}, `load balancer source range: CIDR "::ffff:10.0.0.0/104": IPv4-mapped`},
		{"clusterIP None", func(sp *doormanv1.ServicePort) { sp.ClusterIp = "None" }, "clusterIP"},
		{"affinity above a day", func(sp *doormanv1.ServicePort) { sp.AffinityTimeoutSeconds = AffinityTimeoutMax + 1 }, "affinity timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sp := base()
			tc.mutate(sp)
			_, err := Entry(spEntry(sp))
			if err == nil {
				t.Fatal("Entry: no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"ns/svc:`) {
				t.Errorf("Entry error = %q, want it to name the entry and contain %q", err, tc.want)
			}
			// The renderer's checks agree with the shared validator: what
			// it refuses, the agent refuses before rendering.
			if err := doormanv1.ValidateEntry(spEntry(sp)); err == nil {
				t.Errorf("the renderer refuses a value the shared validator accepts")
			}
		})
	}
	t.Run("IPv4-mapped node address", func(t *testing.T) {
		if _, err := Entry(nodeEntry("::ffff:192.168.1.10")); err == nil || !strings.Contains(err.Error(), `nodeport address: IP address "::ffff:192.168.1.10"`) {
			t.Errorf("Entry(node) error = %v, want one refusing the IPv4-mapped address", err)
		}
	})
	t.Run("node address", func(t *testing.T) {
		if _, err := Entry(nodeEntry("not-an-ip")); err == nil || !strings.Contains(err.Error(), `"node"`) {
			t.Errorf("Entry(node) error = %v, want one naming the node entry", err)
		}
	})
	for _, tc := range []struct {
		name  string
		cidrs []string
		want  string
	}{
		{"service CIDR does not parse", []string{"10.96.0.0/12", "10.96.0.0/33"}, `service CIDR: invalid CIDR "10.96.0.0/33"`},
		{"service CIDR IPv4-mapped", []string{"::ffff:10.96.0.0/108"}, `service CIDR: CIDR "::ffff:10.96.0.0/108": IPv4-mapped`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := nodeEntry("192.168.1.10")
			node.GetNode().ServiceCidrs = tc.cidrs
			_, err := Entry(node)
			if err == nil || !strings.Contains(err.Error(), `"node"`) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Entry(node) error = %v, want one naming the node entry and containing %q", err, tc.want)
			}
		})
	}
}

// TestServiceCIDRsChange: a ServiceCIDR object coming and going changes
// the Node entry, and the diff touches only the service-cidrs elements of
// that range.
func TestServiceCIDRsChange(t *testing.T) {
	node := func(cidrs ...string) *doormanv1.Entry {
		n := nodeEntry("192.168.1.10", "fd00:1::10")
		n.GetNode().PodCidrs = []string{"10.244.1.0/24"}
		n.GetNode().ServiceCidrs = cidrs
		return n
	}
	for _, tc := range []struct {
		name             string
		old, new         *doormanv1.Entry
		wantDel, wantAdd []string
	}{
		{
			name: "first ranges",
			old:  node(), new: node("10.96.0.0/12", "fd00:10:96::/108"),
			wantAdd: []string{
				"service-cidrs 10.96.0.0", "service-cidrs end 10.112.0.0",
				"service-cidrs6 fd00:10:96::", "service-cidrs6 end fd00:10:96::10:0",
			},
		},
		{
			name: "a second ServiceCIDR",
			old:  node("10.96.0.0/12"), new: node("10.96.0.0/12", "10.200.0.0/24"),
			wantAdd: []string{"service-cidrs 10.200.0.0", "service-cidrs end 10.200.1.0"},
		},
		{
			name: "the second one deleted",
			old:  node("10.96.0.0/12", "10.200.0.0/24"), new: node("10.96.0.0/12"),
			wantDel: []string{"service-cidrs 10.200.0.0", "service-cidrs end 10.200.1.0"},
		},
		{
			name: "a range inside another changes nothing",
			old:  node("10.96.0.0/12"), new: node("10.96.0.0/12", "10.100.0.0/24"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkDiff(t, tc.old, tc.new, tc.wantDel, tc.wantAdd)
		})
	}
}

func TestViewLeavesOutBadEntries(t *testing.T) {
	view := smallView()
	bad := spEntry(&doormanv1.ServicePort{Namespace: "a", Name: "bad", Protocol: tcp, Family: ipv4, ClusterIp: "x", Port: 80})
	view[bad.GetKey()] = bad
	got := View(view)
	var keys []string
	for k := range got.Invalid {
		keys = append(keys, k)
	}
	if diff := cmp.Diff([]string{bad.GetKey()}, keys); diff != "" {
		t.Errorf("Invalid keys (-want +got):\n%s", diff)
	}
	if len(got.Refused) != 0 {
		t.Errorf("Refused = %v, want none", got.Refused)
	}
	if diff := cmp.Diff(View(smallView()).String(), got.String()); diff != "" {
		t.Errorf("bad entries changed the table (-want +got):\n%s", diff)
	}
}

func TestDiff(t *testing.T) {
	sp := func(eps ...*doormanv1.Endpoint) *doormanv1.Entry {
		return spEntry(&doormanv1.ServicePort{Namespace: "ns", Name: "svc", Protocol: tcp, Family: ipv4,
			ClusterIp: "10.96.0.1", Port: 80, NodePort: 30001, Endpoints: eps})
	}
	a, b, c := ep("10.244.0.1", 80), ep("10.244.0.2", 80), ep("10.244.0.3", 80)
	tests := []struct {
		name      string
		old, new  *doormanv1.Entry
		wantDel   []string
		wantAdd   []string
		wantChain []string
	}{
		{
			name: "replace one endpoint",
			old:  sp(a, b), new: sp(a, c),
			wantDel: []string{
				"service-endpoints 10.96.0.1 . tcp . 80 . 0x00000001 : 10.244.0.2 . 80",
				"nodeport-endpoints tcp . 30001 . 0x00000001 : 10.244.0.2 . 80",
				"hairpin-pairs 10.244.0.2 . 10.244.0.2",
			},
			wantAdd: []string{
				"service-endpoints 10.96.0.1 . tcp . 80 . 0x00000001 : 10.244.0.3 . 80",
				"nodeport-endpoints tcp . 30001 . 0x00000001 : 10.244.0.3 . 80",
				"hairpin-pairs 10.244.0.3 . 10.244.0.3",
			},
			wantChain: []string{"service-2", "nodeport-2"},
		},
		{
			name: "add an endpoint changes K",
			old:  sp(a, b), new: sp(a, b, c),
			wantDel: []string{
				"service-ips 10.96.0.1 . tcp . 80 : goto service-2",
				"service-nodeports tcp . 30001 : goto nodeport-2",
			},
			wantAdd: []string{
				"service-ips 10.96.0.1 . tcp . 80 : goto service-3",
				"service-endpoints 10.96.0.1 . tcp . 80 . 0x00000002 : 10.244.0.3 . 80",
				"service-nodeports tcp . 30001 : goto nodeport-3",
				"nodeport-endpoints tcp . 30001 . 0x00000002 : 10.244.0.3 . 80",
				"hairpin-pairs 10.244.0.3 . 10.244.0.3",
			},
			wantChain: []string{"service-3", "nodeport-3"},
		},
		{
			name: "last endpoint goes",
			old:  sp(a), new: sp(),
			wantDel: []string{
				"service-ips 10.96.0.1 . tcp . 80 : goto service-1",
				"service-endpoints 10.96.0.1 . tcp . 80 . 0x00000000 : 10.244.0.1 . 80",
				"service-nodeports tcp . 30001 : goto nodeport-1",
				"nodeport-endpoints tcp . 30001 . 0x00000000 : 10.244.0.1 . 80",
				"hairpin-pairs 10.244.0.1 . 10.244.0.1",
			},
			wantAdd: []string{
				"no-endpoint-services 10.96.0.1 . tcp . 80 : goto reject-chain",
				"no-endpoint-nodeports tcp . 30001 : goto reject-chain",
			},
		},
		{
			name: "removed",
			old:  sp(a), new: nil,
			wantDel: []string{
				"cluster-ips 10.96.0.1",
				"service-ips 10.96.0.1 . tcp . 80 : goto service-1",
				"service-endpoints 10.96.0.1 . tcp . 80 . 0x00000000 : 10.244.0.1 . 80",
				"service-nodeports tcp . 30001 : goto nodeport-1",
				"nodeport-endpoints tcp . 30001 . 0x00000000 : 10.244.0.1 . 80",
				"hairpin-pairs 10.244.0.1 . 10.244.0.1",
			},
		},
		{name: "unchanged", old: sp(a, b), new: sp(a, b), wantChain: []string{"service-2", "nodeport-2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			newObjs := checkDiff(t, tc.old, tc.new, tc.wantDel, tc.wantAdd)
			if diff := cmp.Diff(tc.wantChain, newObjs.Chains); diff != "" {
				t.Errorf("chains (-want +got):\n%s", diff)
			}
		})
	}
}

// checkDiff renders old and new, compares Diff's deletes and adds (as
// "set element" text) with the wanted ones, and returns new's objects.
func checkDiff(t *testing.T, old, new *doormanv1.Entry, wantDel, wantAdd []string) Objects {
	t.Helper()
	oldObjs, err := Entry(old)
	if err != nil {
		t.Fatal(err)
	}
	newObjs, err := Entry(new)
	if err != nil {
		t.Fatal(err)
	}
	text := func(es []Element) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Set+" "+FormatElement(e))
		}
		return out
	}
	del, add := Diff(oldObjs, newObjs)
	if diff := cmp.Diff(wantDel, text(del)); diff != "" {
		t.Errorf("deletes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantAdd, text(add)); diff != "" {
		t.Errorf("adds (-want +got):\n%s", diff)
	}
	return newObjs
}

func TestEndpointChain(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"service-1", true}, {"service-12", true}, {"nodeport-3", true},
		{"service-0", false}, {"service-01", false}, {"service-x", false}, {"services", false}, {"nat-output", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := EndpointChain(tc.name); ok != tc.ok {
				t.Errorf("EndpointChain(%q) ok = %v, want %v", tc.name, ok, tc.ok)
			}
		})
	}
}

// TestChainNames: every chain built from its name reads back to the same
// spec; names that are not the canonical spelling of one are refused.
func TestChainNames(t *testing.T) {
	ep := func(proto byte, addr string, port uint16) AffinityEndpoint {
		return AffinityEndpoint{Proto: proto, Addr: netip.MustParseAddr(addr), Port: port}
	}
	for _, spec := range []ChainSpec{
		{Kind: KindService, K: 3},
		{Kind: KindNodePortLocal, K: 1, Affinity: 30},
		{Kind: KindAffinity, Affinity: 10800, Endpoint: ep(unix.IPPROTO_TCP, "10.244.1.10", 80)},
		{Kind: KindAffinityPick, Affinity: 1, Endpoint: ep(unix.IPPROTO_SCTP, "fd00:244:1::6", 65535)},
		{Kind: KindAffinity, Affinity: AffinityTimeoutMax, Endpoint: ep(unix.IPPROTO_UDP, "::1", 1)},
	} {
		name := spec.Name()
		got, ok := ParseChainName(name)
		if !ok {
			t.Errorf("ParseChainName(%q) refused", name)
			continue
		}
		if got != spec {
			t.Errorf("ParseChainName(%q) = %+v, want %+v", name, got, spec)
		}
	}
	for _, name := range []string{
		"affinity-tcp-10.244.1.10-80", "affinity-icmp-10.244.1.10-80-30", "affinity-tcp-10.244.1.010-80-30",
		"affinity-tcp-10.244.1.10-0-30", "affinity-tcp-10.244.1.10-65536-30", "affinity-tcp-10.244.1.10-80-86401",
		"affinity-tcp-FD00::1-80-30", "affinity-tcp-::ffff:10.0.0.1-80-30", "affinity-pick-tcp-10.244.1.10-080-30",
		"affinity-tcp-fe80::1%eth0-80-30", "affinity-tcp-fd00:244:1::6-8443-60", "affinity-tcp-FD00..1-80-30",
		"affinity-tcp-fd00.0.0.0.0.0.0.1-80-30", "affinity-tcp-10.244.1-80-30",
	} {
		if spec, ok := ParseChainName(name); ok {
			t.Errorf("ParseChainName(%q) = %+v, want refused", name, spec)
		}
	}
}

// TestAffinityChainRule: the rule of an endpoint's affinity chain DNATs
// to the endpoint its name gives, and only the remembering kind looks the
// client up before updating the memory.
func TestAffinityChainRule(t *testing.T) {
	for _, kind := range []ChainKind{KindAffinity, KindAffinityPick} {
		spec := ChainSpec{Kind: kind, Affinity: 60, Endpoint: AffinityEndpoint{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddr("fd00:244:1::6"), Port: 53}}
		c := spec.Chain()
		if len(c.Rules) != 1 {
			t.Fatalf("%s: %d rules, want 1", c.Name, len(c.Rules))
		}
		var imm [][]byte
		lookups, updates := 0, 0
		for _, e := range c.Rules[0].Exprs {
			switch e := e.(type) {
			case *expr.Immediate:
				imm = append(imm, e.Data)
			case *expr.Lookup:
				lookups++
				if e.SetName != SetAffinityUDP6 {
					t.Errorf("%s: looks up %s, want %s", c.Name, e.SetName, SetAffinityUDP6)
				}
			case *expr.Dynset:
				updates++
				if e.SetName != SetAffinityUDP6 || e.Timeout != 60*time.Second {
					t.Errorf("%s: updates %s timeout %v, want %s timeout 1m0s", c.Name, e.SetName, e.Timeout, SetAffinityUDP6)
				}
			}
		}
		want := [][]byte{netip.MustParseAddr("fd00:244:1::6").AsSlice(), {0, 53}}
		if diff := cmp.Diff(want, imm); diff != "" {
			t.Errorf("%s: endpoint loaded (-want +got):\n%s", c.Name, diff)
		}
		wantLookups := 0
		if kind == KindAffinity {
			wantLookups = 1
		}
		if lookups != wantLookups || updates != 1 {
			t.Errorf("%s: %d lookups and %d updates, want %d and 1", c.Name, lookups, updates, wantLookups)
		}
		if !strings.HasSuffix(c.Rules[0].Text, "dnat ip6 to [fd00:244:1::6]:53") {
			t.Errorf("%s: text %q does not end with the DNAT to the endpoint", c.Name, c.Rules[0].Text)
		}
	}
}

// TestEstimateIsUpperBound: View sizes its element slice by
// estimateEntry, which must not be below what the Node entry or any kind
// of Service renders to (else the slice grows and is copied), and exact
// for a plain ClusterIP Service (every slot is 112 bytes to allocate and
// scan at 100,000 Services).
func TestEstimateIsUpperBound(t *testing.T) {
	for key, e := range kindsView() {
		objs, err := Entry(e)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if got, est := len(objs.Elements), estimateEntry(e); got > est {
			t.Errorf("%s renders to %d elements, estimate %d", key, got, est)
		}
	}
	plain := &doormanv1.ServicePort{Namespace: "ns", Name: "plain", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.10", Port: 80,
		Endpoints: []*doormanv1.Endpoint{{Ip: "10.128.0.1", Port: 8080}, {Ip: "10.128.0.2", Port: 8080}}}
	objs, err := Entry(&doormanv1.Entry{Key: doormanv1.ServicePortKey(plain), Value: &doormanv1.Entry_ServicePort{ServicePort: plain}})
	if err != nil {
		t.Fatal(err)
	}
	if got, est := len(objs.Elements), estimateElements(plain); est != got {
		t.Errorf("a ClusterIP Service with 2 endpoints renders to %d elements, estimate %d: not exact", got, est)
	}
}

// TestEstimateCoversEveryCombination: estimateElements bounds the elements
// of every combination of endpoints, traffic policies, affinity, external
// addresses (duplicates and one that is the ClusterIP included), source
// ranges and nodePort.
func TestEstimateCoversEveryCombination(t *testing.T) {
	eps := func(prefix string, n int) []*doormanv1.Endpoint {
		var list []*doormanv1.Endpoint
		for i := 0; i < n; i++ {
			list = append(list, ep(fmt.Sprintf("%s.%d", prefix, i+1), 8080))
		}
		return list
	}
	checked := 0
	for _, nEps := range []int{0, 1, 3} {
		for _, nCluster := range []int{0, 2} {
			for _, nLocal := range []int{0, 2} {
				for _, policy := range []int{0, 1, 2, 3} { // bit 0: internal Local, bit 1: external Local
					for _, affinity := range []uint32{0, 10800} {
						for _, ext := range [][]string{nil, {"192.0.2.1", "192.0.2.1", "10.96.0.10"}} {
							for _, lb := range [][]string{nil, {"192.0.2.1"}, {"192.0.2.9", "192.0.2.10"}} {
								for _, ranges := range [][]string{nil, {"203.0.113.0/24", "198.51.100.0/24"}, {"203.0.113.0/24", "203.0.113.0/25"}} {
									for _, np := range []uint32{0, 30080} {
										sp := &doormanv1.ServicePort{Namespace: "ns", Name: "all", Protocol: tcp, Family: ipv4,
											ClusterIp: "10.96.0.10", Port: 80, NodePort: np, AffinityTimeoutSeconds: affinity,
											Endpoints: eps("10.244.1", nEps), ClusterEndpoints: eps("10.244.2", nCluster), LocalEndpoints: eps("10.244.3", nLocal),
											InternalPolicyLocal: policy&1 != 0, ExternalPolicyLocal: policy&2 != 0,
											ExternalIps: ext, LoadBalancerIps: lb, LoadBalancerSourceRanges: ranges}
										objs, err := Entry(spEntry(sp))
										if err != nil {
											t.Fatalf("%v: %v", sp, err)
										}
										if got, est := len(objs.Elements), estimateElements(sp); got > est {
											t.Errorf("%v renders to %d elements, estimate %d", sp, got, est)
										}
										checked++
									}
								}
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations", checked)
}
