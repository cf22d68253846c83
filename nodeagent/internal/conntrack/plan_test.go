package conntrack

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func sp(proto doormanv1.Protocol, eps ...string) *doormanv1.Entry {
	s := &doormanv1.ServicePort{Namespace: "ns", Name: "dns", Protocol: proto, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 53, NodePort: 30053, ExternalIps: []string{"192.0.2.1"}}
	for _, ip := range eps {
		s.Endpoints = append(s.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 5353})
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(s), Value: &doormanv1.Entry_ServicePort{ServicePort: s}}
}

// nodeLocal is sp with internalTrafficPolicy Local: endpoints are this
// node's, cluster the cluster-wide set.
func nodeLocal(local, cluster []string) *doormanv1.Entry {
	e := sp(udp, local...)
	s := e.GetServicePort()
	s.InternalPolicyLocal = true
	for _, ip := range cluster {
		s.ClusterEndpoints = append(s.ClusterEndpoints, &doormanv1.Endpoint{Ip: ip, Port: 5353})
	}
	return e
}

// withPort sets every endpoint's port of e.
func withPort(e *doormanv1.Entry, port uint32) *doormanv1.Entry {
	for _, ep := range e.GetServicePort().GetEndpoints() {
		ep.Port = port
	}
	return e
}

const udp, tcp = doormanv1.Protocol_PROTOCOL_UDP, doormanv1.Protocol_PROTOCOL_TCP

func TestPlan(t *testing.T) {
	a := netip.MustParseAddr
	ep := func(s string) netip.AddrPort { return netip.AddrPortFrom(a(s), 5353) }
	cip, ext := a("10.96.0.10"), a("192.0.2.1")
	tests := []struct {
		name     string
		old, new *doormanv1.Entry
		want     []Target
	}{
		{
			name: "endpoint removed",
			old:  sp(udp, "10.244.0.1", "10.244.0.2"), new: sp(udp, "10.244.0.2"),
			want: []Target{
				{Frontend: cip, Port: 53, Endpoint: ep("10.244.0.1")},
				{Frontend: ext, Port: 53, Endpoint: ep("10.244.0.1")},
				{Port: 30053, NodePort: true, Endpoint: ep("10.244.0.1")},
			},
		},
		{
			name: "service removed",
			old:  sp(udp, "10.244.0.1"), new: nil,
			want: []Target{
				{Frontend: cip, Port: 53, Endpoint: ep("10.244.0.1")},
				{Frontend: ext, Port: 53, Endpoint: ep("10.244.0.1")},
				{Port: 30053, NodePort: true, Endpoint: ep("10.244.0.1")},
			},
		},
		{
			name: "first endpoint arrives",
			old:  sp(udp), new: sp(udp, "10.244.0.1"),
			want: []Target{
				{Frontend: cip, Port: 53},
				{Frontend: ext, Port: 53},
				{Port: 30053, NodePort: true},
			},
		},
		{
			name: "internal policy local: remote endpoint removed",
			old:  nodeLocal(nil, []string{"10.244.1.1", "10.244.2.1"}), new: nodeLocal(nil, []string{"10.244.2.1"}),
			want: []Target{
				{Frontend: cip, Port: 53, Endpoint: ep("10.244.1.1")},
				{Frontend: ext, Port: 53, Endpoint: ep("10.244.1.1")},
				{Port: 30053, NodePort: true, Endpoint: ep("10.244.1.1")},
			},
		},
		{
			name: "internal policy local: first local endpoint clears the ClusterIP only",
			old:  nodeLocal(nil, []string{"10.244.2.1"}), new: nodeLocal([]string{"10.244.0.1"}, []string{"10.244.0.1", "10.244.2.1"}),
			want: []Target{{Frontend: cip, Port: 53}},
		},
		{
			name: "internal policy local: first remote endpoint clears the external frontends only",
			old:  nodeLocal(nil, nil), new: nodeLocal(nil, []string{"10.244.2.1"}),
			want: []Target{
				{Frontend: ext, Port: 53},
				{Port: 30053, NodePort: true},
			},
		},
		{
			name: "target port changed",
			old:  sp(udp, "10.244.0.1"), new: withPort(sp(udp, "10.244.0.1"), 5354),
			want: []Target{
				{Frontend: cip, Port: 53, Endpoint: ep("10.244.0.1")},
				{Frontend: ext, Port: 53, Endpoint: ep("10.244.0.1")},
				{Port: 30053, NodePort: true, Endpoint: ep("10.244.0.1")},
			},
		},
		{name: "endpoint added", old: sp(udp, "10.244.0.1"), new: sp(udp, "10.244.0.1", "10.244.0.2")},
		{name: "tcp endpoint removed", old: sp(tcp, "10.244.0.1", "10.244.0.2"), new: sp(tcp, "10.244.0.2")},
		{name: "new service without endpoints", new: sp(udp)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Plan([]dataplane.Change{{Key: "k", Old: tc.old, New: tc.new}})
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y }), cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}
