package model

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// FuzzPorts feeds the model Services and EndpointSlices as the API server
// could hand them over (any JSON that decodes). It must never panic; an
// error must name the Service; every entry it returns must be one an agent
// accepts: its key matches its value, addresses parse and belong to the
// entry's family, ports are in range.
func FuzzPorts(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"type":"NodePort","clusterIP":"10.0.0.10","clusterIPs":["10.0.0.10"],"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"http","nodePort":30080}]}}`,
			`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":true},"nodeName":"n1"}]}`},
		{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"clusterIP":"fd00::10","clusterIPs":["fd00::10","10.0.0.10"],"ipFamilies":["IPv6","IPv4"],"ports":[{"protocol":"UDP","port":53,"targetPort":53}],"externalIPs":["192.0.2.1","not-an-ip"],"loadBalancerSourceRanges":["10.0.0.0/8","x"],"internalTrafficPolicy":"Local","externalTrafficPolicy":"Local","healthCheckNodePort":70000,"sessionAffinity":"ClientIP"}}`,
			`{"metadata":{"namespace":"ns","name":"web-2","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv6","ports":[{"protocol":"UDP","port":0}],"endpoints":[{"addresses":["fd01::1","fd01::1","10.1.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true},"hints":{"forZones":[{"name":"a"}]}}]}`},
		{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"clusterIP":"10.0.0.10","ports":[{"name":"a","protocol":"SCTP","port":65536,"targetPort":"missing"}]}}`, `{}`},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, svcJSON, sliceJSON string) {
		var svc corev1.Service
		if json.Unmarshal([]byte(svcJSON), &svc) != nil {
			return
		}
		var slices []*discoveryv1.EndpointSlice
		var s discoveryv1.EndpointSlice
		if json.Unmarshal([]byte(sliceJSON), &s) == nil {
			slices = append(slices, &s)
		}
		values, err := Ports(&svc, slices)
		if err != nil {
			if svc.Name != "" && !strings.Contains(err.Error(), svc.Name) {
				t.Errorf("error does not name Service %q: %v", svc.Name, err)
			}
		}
		for key, v := range values {
			sps := []*doormanv1.ServicePort{v.Default}
			for _, sp := range v.ByNode {
				sps = append(sps, sp)
			}
			for _, sp := range v.ByZone {
				sps = append(sps, sp)
			}
			for _, sp := range sps {
				if sp == nil {
					continue
				}
				checkServicePort(t, key, sp)
			}
		}
	})
}

func checkServicePort(t *testing.T, key string, sp *doormanv1.ServicePort) {
	t.Helper()
	if got := doormanv1.ServicePortKey(sp); got != key {
		t.Errorf("entry under %q has the key %q", key, got)
	}
	if _, err := doormanv1.ValueDigest(sp); err != nil {
		t.Errorf("%s: digest: %v", key, err)
	}
	inFamily := func(what, s string) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Errorf("%s: %s %q does not parse", key, what, s)
			return
		}
		if a.Is4() != (sp.GetFamily() == doormanv1.IPFamily_IP_FAMILY_IPV4) {
			t.Errorf("%s: %s %s is not of the entry's family %v", key, what, s, sp.GetFamily())
		}
	}
	inFamily("cluster IP", sp.GetClusterIp())
	if sp.GetPort() < 1 || sp.GetPort() > 65535 || sp.GetNodePort() > 65535 {
		t.Errorf("%s: port %d, nodePort %d out of range", key, sp.GetPort(), sp.GetNodePort())
	}
	for _, ip := range append(append([]string{}, sp.GetExternalIps()...), sp.GetLoadBalancerIps()...) {
		inFamily("external address", ip)
	}
	for _, set := range [][]*doormanv1.Endpoint{sp.GetEndpoints(), sp.GetLocalEndpoints(), sp.GetClusterEndpoints()} {
		for _, ep := range set {
			inFamily("endpoint", ep.GetIp())
			if ep.GetPort() < 1 || ep.GetPort() > 65535 {
				t.Errorf("%s: endpoint %s port %d out of range", key, ep.GetIp(), ep.GetPort())
			}
		}
	}
}
