package model

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// compactSeeds add to portsSeeds what the others leave out: labels the
// model reads, hints, conditions left unset, a trigger time, IP modes, an
// ExternalName and a headless Service.
var compactSeeds = [][2]string{
	{`{"metadata":{"namespace":"ns","name":"web","labels":{"service.kubernetes.io/service-proxy-name":"other"}},"spec":{"clusterIP":"10.0.0.10","ports":[{"port":80}]}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web","service.kubernetes.io/headless":""}},"addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.1.0.1"]}]}`},
	{`{"metadata":{"namespace":"ns","name":"web","labels":{"service.kubernetes.io/headless":""}},"spec":{"type":"ExternalName","externalName":"example.com","clusterIP":"None","ports":[{"port":80}]}}`, `{}`},
	{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"clusterIP":"10.0.0.10","clusterIPs":["10.0.0.10"],"ports":[{"name":"http","port":80},{"name":"dns","protocol":"UDP","port":53}],"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}}}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-01-02T03:04:05.123456789Z"}},"addressType":"IPv4","ports":[{"name":"http","port":8080},{"name":"dns","protocol":"UDP","port":5353},{"name":"none"}],"endpoints":[{"addresses":["10.1.0.1"],"nodeName":"n1","zone":"a","hints":{"forZones":[{"name":"a"}],"forNodes":[{"name":"n1"}]}},{"addresses":["10.1.0.2"],"conditions":{"ready":false},"nodeName":"n2","hints":{"forZones":[{"name":"b"}],"forNodes":[{"name":"n2"}]}}]}`},
	{`{"metadata":{"namespace":"ns","name":"lb"},"spec":{"type":"LoadBalancer","clusterIP":"10.0.0.10","ports":[{"port":80,"nodePort":30080}],"externalTrafficPolicy":"Local","healthCheckNodePort":32000,"internalTrafficPolicy":"Local"},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1","ipMode":"Proxy"},{"ip":"192.0.2.2","ipMode":"VIP"},{"hostname":"lb.example.com"}]}}}`,
		`{"metadata":{"namespace":"ns","name":"lb-1","labels":{"kubernetes.io/service-name":"lb"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"yesterday"}},"addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"n1"},{"addresses":["10.1.0.2"],"nodeName":"n2"}]}`},
	{`{"metadata":{"namespace":"ns","name":"np"},"spec":{"type":"NodePort","clusterIP":"","clusterIPs":["10.0.0.10"],"ports":[{"port":80,"nodePort":70000}],"externalIPs":["192.0.2.9"],"loadBalancerSourceRanges":["10.0.0.0/8"]}}`,
		`{"metadata":{"namespace":"ns","name":"np-1","labels":{"kubernetes.io/service-name":"np"}},"addressType":"FQDN","endpoints":[{"addresses":["a.example.com"]}]}`},
	{`{"metadata":{"namespace":"ns","name":"web","uid":"u1","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"clusterIP":"10.0.0.10","ports":[{"port":80,"protocol":"TCP"}]}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"port":8080,"protocol":"TCP"}],"endpoints":[{"addresses":["10.1.0.1"]},{"addresses":[]}]}`},
}

// FuzzCompactForms checks that the compact forms keep everything the
// model reads: Ports fed the compact forms of a Service and its slices
// gives the same entries and errors as the model's reading of the decoded
// objects themselves (fullPorts), and Skipped the same reason.
func FuzzCompactForms(f *testing.F) {
	for _, seed := range append(append([][2]string(nil), portsSeeds...), compactSeeds...) {
		f.Add(seed[0], seed[1], seed[1])
	}
	f.Fuzz(func(t *testing.T, svcJSON, sliceJSON, otherSliceJSON string) {
		var svc corev1.Service
		if json.Unmarshal([]byte(svcJSON), &svc) != nil {
			return
		}
		var full []*discoveryv1.EndpointSlice
		var forms []*compact.Slice
		for _, raw := range []string{sliceJSON, otherSliceJSON} {
			var s discoveryv1.EndpointSlice
			if json.Unmarshal([]byte(raw), &s) == nil {
				full, forms = append(full, &s), append(forms, compact.FromSlice(&s))
			}
		}
		c := compact.FromService(&svc)
		if got, want := Skipped(c), fullSkipped(&svc); got != want {
			t.Errorf("Skipped: %q through the compact form, %q from the Service", got, want)
		}
		got, gotErr := Ports(c, forms)
		want, wantErr := fullPorts(&svc, full)
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("entries through the compact forms (-from the objects +through the compact forms):\n%s", diff)
		}
		if errString(gotErr) != errString(wantErr) {
			t.Errorf("error through the compact forms %v, from the objects %v", gotErr, wantErr)
		}
		if got, want := ageOf(c), (age{created: svc.CreationTimestamp.Unix(), uid: string(svc.UID)}); got != want {
			t.Errorf("age through the compact form %v, from the Service %v", got, want)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
