package model

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func ptr[T any](v T) *T { return &v }

const (
	tcp  = doormanv1.Protocol_PROTOCOL_TCP
	udp  = doormanv1.Protocol_PROTOCOL_UDP
	sctp = doormanv1.Protocol_PROTOCOL_SCTP
	v4   = doormanv1.IPFamily_IP_FAMILY_IPV4
	v6   = doormanv1.IPFamily_IP_FAMILY_IPV6
)

type svcOpt func(*corev1.Service)

func svc(opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  "10.0.0.10",
			ClusterIPs: []string{"10.0.0.10"},
			Ports:      []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

type ep struct {
	ip, node         string
	ready, serving   *bool
	terminating      bool
	forZones, forNds []string
}

func slice(name string, at discoveryv1.AddressType, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{LabelServiceName: "web"}},
		AddressType: at,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(p)})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: ptr(e.terminating)}}
		if e.node != "" {
			x.NodeName = ptr(e.node)
		}
		if len(e.forZones)+len(e.forNds) > 0 {
			x.Hints = &discoveryv1.EndpointHints{}
			for _, z := range e.forZones {
				x.Hints.ForZones = append(x.Hints.ForZones, discoveryv1.ForZone{Name: z})
			}
			for _, n := range e.forNds {
				x.Hints.ForNodes = append(x.Hints.ForNodes, discoveryv1.ForNode{Name: n})
			}
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func eps(pairs ...any) []*doormanv1.Endpoint {
	var out []*doormanv1.Endpoint
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &doormanv1.Endpoint{Ip: pairs[i].(string), Port: uint32(pairs[i+1].(int))})
	}
	return out
}

func sp(mod func(*doormanv1.ServicePort)) *doormanv1.ServicePort {
	p := &doormanv1.ServicePort{Namespace: "ns", Name: "web", PortName: "http", Protocol: tcp, Family: v4, ClusterIp: "10.0.0.10", Port: 80}
	if mod != nil {
		mod(p)
	}
	return p
}

func TestPorts(t *testing.T) {
	http8080 := map[string]int32{"http": 8080}
	tests := []struct {
		name    string
		svc     *corev1.Service
		slices  []*discoveryv1.EndpointSlice
		want    map[string]Value
		wantErr string
	}{
		{
			name: "cluster ip, ready endpoints sorted, not ready excluded",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.9"}, ep{ip: "10.1.0.3", ready: ptr(false)}),
				slice("b", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.2", ready: ptr(true)}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.Endpoints = eps("10.1.0.2", 8080, "10.1.0.9", 8080)
			})}},
		},
		{
			name: "named target port differs per slice",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: "10.1.0.1"}),
				slice("b", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 9090}, ep{ip: "10.1.0.2"}),
				slice("c", discoveryv1.AddressTypeIPv4, map[string]int32{"metrics": 9100}, ep{ip: "10.1.0.3"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.Endpoints = eps("10.1.0.1", 8080, "10.1.0.2", 9090)
			})}},
		},
		{
			name: "duplicate endpoint in two slices kept once",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1", ready: ptr(false)}),
				slice("b", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.Endpoints = eps("10.1.0.1", 8080)
			})}},
		},
		{
			name: "terminating fallback when none ready",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080,
					ep{ip: "10.1.0.1", ready: ptr(false), serving: ptr(true), terminating: true},
					ep{ip: "10.1.0.2", ready: ptr(false), serving: ptr(false), terminating: true}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.Endpoints = []*doormanv1.Endpoint{{Ip: "10.1.0.1", Port: 8080, Terminating: true}}
			})}},
		},
		{
			name: "newest trigger time of the slices",
			svc:  svc(),
			slices: func() []*discoveryv1.EndpointSlice {
				a := slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1"})
				b := slice("b", discoveryv1.AddressTypeIPv4, http8080)
				c := slice("c", discoveryv1.AddressTypeIPv4, http8080)
				a.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-02T03:04:05.000000006Z"}
				b.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-02T03:04:07Z"}
				c.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "yesterday"}
				return []*discoveryv1.EndpointSlice{a, b, c}
			}(),
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.Endpoints = eps("10.1.0.1", 8080)
				p.TriggerTimeUnixNano = 1767323047000000000
			})}},
		},
		{
			name: "no slices: entry without endpoints",
			svc:  svc(),
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(nil)}},
		},
		{
			name: "nodeport with tcp udp sctp on one number, unnamed single port",
			svc: svc(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports = []corev1.ServicePort{
					{Name: "t", Protocol: corev1.ProtocolTCP, Port: 53, NodePort: 30053},
					{Name: "u", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
					{Name: "s", Protocol: corev1.ProtocolSCTP, Port: 53, NodePort: 30054},
				}
				s.Spec.ExternalIPs = []string{"192.0.2.9", "192.0.2.1", "2001:db8::1"}
			}),
			want: map[string]Value{
				"ns/web:t/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
					p.PortName, p.Port, p.NodePort, p.ExternalIps = "t", 53, 30053, []string{"192.0.2.1", "192.0.2.9"}
				})},
				"ns/web:u/udp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
					p.PortName, p.Protocol, p.Port, p.NodePort, p.ExternalIps = "u", udp, 53, 30053, []string{"192.0.2.1", "192.0.2.9"}
				})},
				"ns/web:s/sctp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
					p.PortName, p.Protocol, p.Port, p.NodePort, p.ExternalIps = "s", sctp, 53, 30054, []string{"192.0.2.1", "192.0.2.9"}
				})},
			},
		},
		{
			name: "unnamed port keyed by number, nodePort ignored on ClusterIP type",
			svc: svc(func(s *corev1.Service) {
				s.Spec.Ports = []corev1.ServicePort{{Port: 8443, NodePort: 31000}}
			}),
			want: map[string]Value{"ns/web:8443/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) { p.PortName, p.Port = "", 8443 })}},
		},
		{
			name: "load balancer: ingress without proxy mode, source ranges, affinity",
			svc: svc(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.7/24", " 203.0.113.0/28", "2001:db8::/32"}
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{
					{IP: "192.0.2.50"},
					{IP: "192.0.2.51", IPMode: ptr(corev1.LoadBalancerIPModeProxy)},
					{IP: "192.0.2.52", IPMode: ptr(corev1.LoadBalancerIPModeVIP)},
					{Hostname: "lb.example"},
				}
			}),
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) {
				p.NodePort = 30080
				p.LoadBalancerIps = []string{"192.0.2.50", "192.0.2.52"}
				p.LoadBalancerSourceRanges = []string{"198.51.100.0/24", "203.0.113.0/28"}
				p.AffinityTimeoutSeconds = 10800
			})}},
		},
		{
			name: "dual stack: each family from its own slices",
			svc: svc(func(s *corev1.Service) {
				s.Spec.ClusterIPs = []string{"10.0.0.10", "fd00::10"}
				s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			}),
			slices: []*discoveryv1.EndpointSlice{
				slice("a4", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1"}),
				slice("a6", discoveryv1.AddressTypeIPv6, http8080, ep{ip: "fd01::1"}, ep{ip: "fd01::0:2"}),
				slice("fqdn", discoveryv1.AddressTypeFQDN, http8080, ep{ip: "example.com"}),
			},
			want: map[string]Value{
				"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.1", 8080) })},
				"ns/web:http/tcp/ipv6": {Default: sp(func(p *doormanv1.ServicePort) {
					p.Family, p.ClusterIp, p.Endpoints = v6, "fd00::10", eps("fd01::1", 8080, "fd01::2", 8080)
				})},
			},
		},
		{
			name: "internal traffic policy local: endpoints per node",
			svc: svc(func(s *corev1.Service) {
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
			}),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1", node: "n1"}, ep{ip: "10.1.0.2", node: "n2"}, ep{ip: "10.1.0.3", node: "n1"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {
				Default: sp(func(p *doormanv1.ServicePort) { p.InternalPolicyLocal = true }),
				ByNode: map[string]*doormanv1.ServicePort{
					"n1": sp(func(p *doormanv1.ServicePort) {
						p.InternalPolicyLocal, p.Endpoints = true, eps("10.1.0.1", 8080, "10.1.0.3", 8080)
					}),
					"n2": sp(func(p *doormanv1.ServicePort) { p.InternalPolicyLocal, p.Endpoints = true, eps("10.1.0.2", 8080) }),
				},
			}},
		},
		{
			name: "internal traffic policy local with a NodePort: cluster endpoints kept for external traffic",
			svc: svc(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeNodePort
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			}),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1", node: "n1"}, ep{ip: "10.1.0.2", node: "n2"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {
				Default: sp(func(p *doormanv1.ServicePort) {
					p.NodePort, p.InternalPolicyLocal = 30080, true
					p.ClusterEndpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080)
				}),
				ByNode: map[string]*doormanv1.ServicePort{
					"n1": sp(func(p *doormanv1.ServicePort) {
						p.NodePort, p.InternalPolicyLocal = 30080, true
						p.Endpoints, p.ClusterEndpoints = eps("10.1.0.1", 8080), eps("10.1.0.1", 8080, "10.1.0.2", 8080)
					}),
					"n2": sp(func(p *doormanv1.ServicePort) {
						p.NodePort, p.InternalPolicyLocal = 30080, true
						p.Endpoints, p.ClusterEndpoints = eps("10.1.0.2", 8080), eps("10.1.0.1", 8080, "10.1.0.2", 8080)
					}),
				},
			}},
		},
		{
			name: "external traffic policy local: local endpoints per node, health check port",
			svc: svc(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.Spec.HealthCheckNodePort = 32000
			}),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1", node: "n1"}, ep{ip: "10.1.0.2", node: "n2"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {
				Default: sp(func(p *doormanv1.ServicePort) {
					p.NodePort, p.ExternalPolicyLocal, p.HealthCheckNodePort = 30080, true, 32000
					p.Endpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080)
				}),
				ByNode: map[string]*doormanv1.ServicePort{
					"n1": sp(func(p *doormanv1.ServicePort) {
						p.NodePort, p.ExternalPolicyLocal, p.HealthCheckNodePort = 30080, true, 32000
						p.Endpoints, p.LocalEndpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080), eps("10.1.0.1", 8080)
					}),
					"n2": sp(func(p *doormanv1.ServicePort) {
						p.NodePort, p.ExternalPolicyLocal, p.HealthCheckNodePort = 30080, true, 32000
						p.Endpoints, p.LocalEndpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080), eps("10.1.0.2", 8080)
					}),
				},
			}},
		},
		{
			name: "external traffic policy local on a ClusterIP service has no effect",
			svc: svc(func(s *corev1.Service) {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}),
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(nil)}},
		},
		{
			name: "zone hints on every endpoint: override by zone",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080,
					ep{ip: "10.1.0.1", forZones: []string{"z1"}}, ep{ip: "10.1.0.2", forZones: []string{"z2"}}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {
				Default: sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080) }),
				ByZone: map[string]*doormanv1.ServicePort{
					"z1": sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.1", 8080) }),
					"z2": sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.2", 8080) }),
				},
			}},
		},
		{
			name: "hints on only some endpoints: ignored",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("a", discoveryv1.AddressTypeIPv4, http8080,
					ep{ip: "10.1.0.1", forZones: []string{"z1"}}, ep{ip: "10.1.0.2"}),
			},
			want: map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.1", 8080, "10.1.0.2", 8080) })}},
		},
		{name: "headless skipped", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} })},
		{name: "external name skipped", svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "", nil, "example.com"
		})},
		{name: "service-proxy-name label skipped", svc: svc(func(s *corev1.Service) { s.Labels = map[string]string{LabelServiceProxyName: "other"} })},
		{name: "headless label skipped", svc: svc(func(s *corev1.Service) { s.Labels = map[string]string{LabelHeadless: ""} })},
		{
			name:    "invalid cluster IP: no entries, error names the service",
			svc:     svc(func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.0.0.300"} }),
			wantErr: "service ns/web: clusterIP",
		},
		{
			name:    "port 0: no entries",
			svc:     svc(func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }),
			wantErr: "service ns/web: port \"http\": port 0 out of range",
		},
		{
			name:    "unknown protocol: no entries",
			svc:     svc(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }),
			wantErr: "unknown protocol",
		},
		{
			name: "bad slice skipped, the others used",
			svc:  svc(),
			slices: []*discoveryv1.EndpointSlice{
				slice("bad", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.999"}),
				slice("v6-in-v4", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "fd00::1"}),
				slice("port0", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 0}, ep{ip: "10.1.0.7"}),
				slice("good", discoveryv1.AddressTypeIPv4, http8080, ep{ip: "10.1.0.1"}),
			},
			want:    map[string]Value{"ns/web:http/tcp/ipv4": {Default: sp(func(p *doormanv1.ServicePort) { p.Endpoints = eps("10.1.0.1", 8080) })}},
			wantErr: "endpointslice ns/bad of service ns/web",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := portsOf(tt.svc, tt.slices)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Ports: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Ports error = %v, want one containing %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Ports (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadSliceErrorsNameEachSlice(t *testing.T) {
	_, err := portsOf(svc(), []*discoveryv1.EndpointSlice{
		slice("bad", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 1}, ep{ip: "x"}),
		slice("v6-in-v4", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 1}, ep{ip: "fd00::1"}),
		slice("port0", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 0}, ep{ip: "10.1.0.7"}),
	})
	for _, name := range []string{"ns/bad", "ns/v6-in-v4", "ns/port0"} {
		if err == nil || !strings.Contains(err.Error(), "endpointslice "+name+" ") {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestValueFor(t *testing.T) {
	def, zone, node := sp(nil), sp(func(p *doormanv1.ServicePort) { p.Port = 1 }), sp(func(p *doormanv1.ServicePort) { p.Port = 2 })
	v := Value{Default: def, ByZone: map[string]*doormanv1.ServicePort{"z": zone}, ByNode: map[string]*doormanv1.ServicePort{"n": node}}
	for _, tt := range []struct {
		node, zone string
		want       *doormanv1.ServicePort
	}{{"n", "z", node}, {"m", "z", zone}, {"m", "", def}, {"m", "y", def}} {
		if got := v.For(tt.node, tt.zone); got != tt.want {
			t.Errorf("For(%q, %q) = %v, want %v", tt.node, tt.zone, got, tt.want)
		}
	}
}

func TestNode(t *testing.T) {
	node := func(mod func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}},
			Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24", "fd10:1::/64"}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeHostName, Address: "n1"},
				{Type: corev1.NodeInternalIP, Address: "172.18.0.3"},
				{Type: corev1.NodeExternalIP, Address: "203.0.113.3"},
				{Type: corev1.NodeInternalIP, Address: "fc00::3"},
			}},
		}
		if mod != nil {
			mod(n)
		}
		return n
	}
	tests := []struct {
		name    string
		node    *corev1.Node
		cidrs   []string
		want    *doormanv1.Node
		wantErr string
	}{
		{
			name: "every internal and external address",
			node: node(nil),
			want: &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"172.18.0.3", "203.0.113.3", "fc00::3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name:  "filtered by nodeport-addresses",
			node:  node(nil),
			cidrs: []string{"172.18.0.0/16", "fc00::/7"},
			want:  &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"172.18.0.3", "fc00::3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name: "primary: first InternalIP of each family",
			node: node(func(n *corev1.Node) {
				n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: "172.18.0.4"})
			}),
			cidrs: []string{"primary"},
			want:  &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"172.18.0.3", "fc00::3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name: "primary: InternalIPs before ExternalIPs, whatever the order",
			node: node(func(n *corev1.Node) {
				n.Status.Addresses = []corev1.NodeAddress{
					{Type: corev1.NodeExternalIP, Address: "203.0.113.3"},
					{Type: corev1.NodeExternalIP, Address: "2001:db8::3"},
					{Type: corev1.NodeInternalIP, Address: "172.18.0.3"},
				}
			}),
			cidrs: []string{"primary"},
			want:  &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"172.18.0.3", "2001:db8::3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name: "primary: ExternalIP when there is no InternalIP",
			node: node(func(n *corev1.Node) {
				n.Status.Addresses = []corev1.NodeAddress{
					{Type: corev1.NodeExternalIP, Address: "203.0.113.3"},
					{Type: corev1.NodeExternalIP, Address: "203.0.113.4"},
				}
			}),
			cidrs: []string{"primary"},
			want:  &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"203.0.113.3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name: "primary: a loopback first address is not used",
			node: node(func(n *corev1.Node) {
				n.Status.Addresses = []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
					{Type: corev1.NodeInternalIP, Address: "172.18.0.3"},
					{Type: corev1.NodeInternalIP, Address: "fc00::3"},
				}
			}),
			cidrs: []string{"primary"},
			want:  &doormanv1.Node{Name: "n1", Zone: "z1", NodeportAddresses: []string{"fc00::3"}, PodCidrs: []string{"10.244.1.0/24", "fd10:1::/64"}},
		},
		{
			name:    "primary: an invalid address is still an error",
			node:    node(func(n *corev1.Node) { n.Status.Addresses[2].Address = "203.0.113" }),
			cidrs:   []string{"primary"},
			wantErr: "node n1: ExternalIP",
		},
		{
			name: "single pod CIDR, no zone",
			node: node(func(n *corev1.Node) { n.Labels, n.Spec.PodCIDRs = nil, nil }),
			want: &doormanv1.Node{Name: "n1", NodeportAddresses: []string{"172.18.0.3", "203.0.113.3", "fc00::3"}, PodCidrs: []string{"10.244.1.0/24"}},
		},
		{
			name:    "invalid address",
			node:    node(func(n *corev1.Node) { n.Status.Addresses[1].Address = "172.18.0" }),
			wantErr: "node n1: InternalIP",
		},
		{
			name:    "invalid pod CIDR",
			node:    node(func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0/33"} }),
			wantErr: "node n1: podCIDRs",
		},
		{
			name:    "IPv4-mapped pod CIDR",
			node:    node(func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.1.0/24", "::ffff:10.244.2.0/120"} }),
			wantErr: `node n1: podCIDRs: CIDR "::ffff:10.244.2.0/120": IPv4-mapped IPv6 prefixes are not allowed`,
		},
		{
			name:    "IPv4-mapped address",
			node:    node(func(n *corev1.Node) { n.Status.Addresses[1].Address = "::ffff:172.18.0.3" }),
			wantErr: `node n1: InternalIP: IP address "::ffff:172.18.0.3": zones and IPv4-mapped`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodePorts, err := ParseNodePortAddresses(tt.cidrs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Node(tt.node, nodePorts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Node error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("Node (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseNodePortAddresses(t *testing.T) {
	tests := []struct {
		in      []string
		want    NodePortAddresses
		wantErr string
	}{
		{in: nil, want: NodePortAddresses{}},
		{in: []string{"primary"}, want: NodePortAddresses{Primary: true}},
		{in: []string{" 172.18.0.1/16", "fc00::/7"}, want: NodePortAddresses{CIDRs: []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16"), netip.MustParsePrefix("fc00::/7")}}},
		{in: []string{"primary", "172.18.0.0/16"}, wantErr: `"primary" must be the only value`},
		{in: []string{"nonsense"}, wantErr: "nodeport address range"},
		{in: []string{"::ffff:172.18.0.0/112"}, wantErr: "IPv4-mapped"},
	}
	for _, tt := range tests {
		got, err := ParseNodePortAddresses(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseNodePortAddresses(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseNodePortAddresses(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("ParseNodePortAddresses(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestModel(t *testing.T) {
	m := New()
	keys := func(rs []Result) map[string][]string {
		out := map[string][]string{}
		for _, r := range rs {
			out[r.Service] = []string{}
			for k, v := range r.Values {
				out[r.Service] = append(out[r.Service], k+" "+endpointsOf(v.Default))
			}
		}
		return out
	}
	steps := []struct {
		name string
		do   func() []Result
		want map[string][]string
	}{
		{"slice before its service", func() []Result {
			return m.SetSlice(slice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: "10.1.0.1"}))
		}, map[string][]string{"ns/web": {}}},
		{"service arrives", func() []Result { return m.SetService(svc()) },
			map[string][]string{"ns/web": {"ns/web:http/tcp/ipv4 10.1.0.1:8080"}}},
		{"slice without service label ignored", func() []Result {
			s := slice("x", discoveryv1.AddressTypeIPv4, nil)
			s.Labels = nil
			return m.SetSlice(s)
		}, map[string][]string{}},
		{"slice label moves to another service", func() []Result {
			s := slice("a", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: "10.1.0.1"})
			s.Labels[LabelServiceName] = "other"
			return m.SetSlice(s)
		}, map[string][]string{"ns/web": {"ns/web:http/tcp/ipv4 "}, "ns/other": {}}},
		{"slice deleted", func() []Result { return m.DeleteSlice("ns", "a") }, map[string][]string{"ns/other": {}}},
		{"service deleted", func() []Result { return m.DeleteService("ns", "web") }, map[string][]string{"ns/web": {}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if diff := cmp.Diff(st.want, keys(st.do())); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		})
	}
}

func endpointsOf(sp *doormanv1.ServicePort) string {
	var parts []string
	for _, e := range sp.GetEndpoints() {
		parts = append(parts, netip.AddrPortFrom(netip.MustParseAddr(e.GetIp()), uint16(e.GetPort())).String())
	}
	return strings.Join(parts, ",")
}

// portsOf is Ports of the compact forms of svc and slices.
func portsOf(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) (map[string]Value, error) {
	forms := make([]*compact.Slice, len(slices))
	for i, s := range slices {
		forms[i] = compact.FromSlice(s)
	}
	return Ports(compact.FromService(svc), forms)
}
