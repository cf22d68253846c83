package model

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// dualLB is a dual-stack LoadBalancer Service ns/<name>.
func dualLB(name string, opts ...svcOpt) *corev1.Service {
	s := svc(func(s *corev1.Service) {
		s.Name = name
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ClusterIPs = []string{"10.0.0.10", "fd00::10"}
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8", "fd00::/8"}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}, {IP: "2001:db8::1"}}
	})
	for _, o := range opts {
		o(s)
	}
	return s
}

// TestIPv4MappedFailsTheService: an IPv4-mapped value in any address or
// prefix field of a Service (API servers before 1.36 store them) is not
// sent as IPv6 nor unmapped: the Service yields no entries and an error
// naming it and the value. In an EndpointSlice, the slice is left out.
func TestIPv4MappedFailsTheService(t *testing.T) {
	if _, err := portsOf(dualLB("ok"), nil); err != nil {
		t.Fatalf("valid Service: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  svcOpt
		want string
	}{
		{"loadBalancerSourceRanges", func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8", "::ffff:10.0.0.0/104"}
		},
			`service ns/lb: loadBalancerSourceRanges: CIDR "::ffff:10.0.0.0/104": IPv4-mapped IPv6 prefixes are not allowed`},
		{"loadBalancerSourceRanges with spaces", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{" ::ffff:10.0.0.0/104 "} },
			`service ns/lb: loadBalancerSourceRanges: CIDR "::ffff:10.0.0.0/104": IPv4-mapped`},
		{"externalIPs", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"::ffff:192.0.2.1"} },
			`service ns/lb: externalIPs: IP address "::ffff:192.0.2.1": zones and IPv4-mapped`},
		{"load balancer ingress", func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "::ffff:198.51.100.1" },
			`service ns/lb: status.loadBalancer.ingress: IP address "::ffff:198.51.100.1"`},
		{"clusterIPs", func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"::ffff:10.0.0.10"} },
			`service ns/lb: clusterIP: IP address "::ffff:10.0.0.10"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values, err := portsOf(dualLB("lb", tc.mod), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ports error = %v, want one containing %q", err, tc.want)
			}
			if values != nil {
				t.Errorf("Ports returned %d keys for an invalid Service", len(values))
			}
		})
	}
	t.Run("endpoint", func(t *testing.T) {
		values, err := portsOf(svc(), []*discoveryv1.EndpointSlice{
			slice("mapped", discoveryv1.AddressTypeIPv6, map[string]int32{"http": 8080}, ep{ip: "::ffff:10.1.0.1"}),
			slice("good", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: "10.1.0.2"}),
		})
		if err == nil || !strings.Contains(err.Error(), `endpointslice ns/mapped of service ns/web: endpoint 0: IP address "::ffff:10.1.0.1"`) {
			t.Fatalf("Ports error = %v, want one naming the slice", err)
		}
		if got := values["ns/web:http/tcp/ipv4"].Default.GetEndpoints(); len(got) != 1 || got[0].GetIp() != "10.1.0.2" {
			t.Errorf("endpoints %v, want the good slice's", got)
		}
	})
}

// TestModelDropsOnlyTheBadService: one Service with an IPv4-mapped source
// range loses its entries and is named in its Result; another Service,
// set before and after it, is unaffected.
func TestModelDropsOnlyTheBadService(t *testing.T) {
	m := New()
	before := m.SetService(dualLB("before"))[0]
	if before.Err != nil || len(before.Values) != 2 {
		t.Fatalf("first Service: %d keys, err %v; want 2, nil", len(before.Values), before.Err)
	}
	good := dualLB("bad")
	if r := m.SetService(good)[0]; r.Err != nil || len(r.Values) != 2 {
		t.Fatalf("bad Service while still valid: %d keys, err %v", len(r.Values), r.Err)
	}
	// It turns bad: its entries go (Values nil replaces them), the error
	// names it and the value.
	bad := dualLB("bad", func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"::ffff:10.0.0.0/104"} })
	r := m.SetService(bad)[0]
	if r.Service != "ns/bad" || r.Values != nil || r.Err == nil ||
		!strings.Contains(r.Err.Error(), "service ns/bad") || !strings.Contains(r.Err.Error(), "::ffff:10.0.0.0/104") {
		t.Fatalf("bad Service: %+v; want no values and an error naming ns/bad and the range", r)
	}
	// A slice of the bad Service changes: still no entries, still named.
	sl := slice("bad-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: "10.1.0.1"})
	sl.Labels[LabelServiceName] = "bad"
	if rs := m.SetSlice(sl); len(rs) != 1 || rs[0].Values != nil || rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "service ns/bad") {
		t.Fatalf("slice of the bad Service: %+v; want one Result without values, naming ns/bad", rs)
	}
	after := m.SetService(dualLB("after"))[0]
	if after.Err != nil || len(after.Values) != 2 {
		t.Fatalf("Service after the bad one: %d keys, err %v; want 2, nil", len(after.Values), after.Err)
	}
	for key, v := range after.Values {
		if err := validValue(key, v); err != nil {
			t.Errorf("%s: %v", key, err)
		}
		if v.Default.GetFamily() == doormanv1.IPFamily_IP_FAMILY_IPV6 && len(v.Default.GetLoadBalancerSourceRanges()) != 1 {
			t.Errorf("%s: source ranges %v", key, v.Default.GetLoadBalancerSourceRanges())
		}
	}
}

// TestValidValue: the last check before a value leaves the model is the
// agents' own; its error names the key and the value at fault.
func TestValidValue(t *testing.T) {
	good := &doormanv1.ServicePort{Namespace: "ns", Name: "web", PortName: "http", Protocol: tcp, Family: v6, ClusterIp: "fd00::10", Port: 80}
	key := doormanv1.ServicePortKey(good)
	if err := validValue(key, Value{Default: good}); err != nil {
		t.Fatalf("valid value: %v", err)
	}
	bad := &doormanv1.ServicePort{Namespace: "ns", Name: "web", PortName: "http", Protocol: tcp, Family: v6, ClusterIp: "fd00::10", Port: 80,
		LoadBalancerSourceRanges: []string{"::ffff:10.0.0.0/104"}}
	for name, v := range map[string]Value{
		"default": {Default: bad},
		"by node": {Default: good, ByNode: map[string]*doormanv1.ServicePort{"n1": bad}},
		"by zone": {Default: good, ByZone: map[string]*doormanv1.ServicePort{"z1": bad}},
	} {
		err := validValue(key, v)
		if err == nil || !strings.Contains(err.Error(), `entry "ns/web:http/tcp/ipv6"`) || !strings.Contains(err.Error(), `"::ffff:10.0.0.0/104"`) {
			t.Errorf("%s: error %v, want one naming the key and the range", name, err)
		}
	}
	if err := validValue("ns/other:80/tcp/ipv6", Value{Default: good}); err == nil {
		t.Error("a value under another key passed")
	}
}
