package model

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// FuzzPorts feeds the model Services and EndpointSlices as the API server
// could hand them over (any JSON that decodes). It must never panic; an
// error must name the Service; every entry it returns must be one an agent
// accepts, by the agents' own check (doormanv1.ValidateEntry on the entry
// the view would send: key, digest and every field, source ranges
// included). The Service, a twin of it (same spec, another name, age and
// UID) and a second Service then go through a Model, and the first is
// deleted: after each change the entries the Results leave in the view
// never claim one address . protocol . port twice.
func FuzzPorts(f *testing.F) {
	for _, seed := range portsSeeds {
		f.Add(seed[0], seed[1], `{"metadata":{"namespace":"aaa","name":"x","creationTimestamp":"2020-01-01T00:00:00Z"},"spec":{"type":"LoadBalancer","clusterIP":"10.0.0.10","ports":[{"port":80},{"port":53,"protocol":"UDP"}],"externalIPs":["10.0.0.10"]},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"},{"ip":"10.0.0.11"}]}}}`)
	}
	f.Fuzz(func(t *testing.T, svcJSON, sliceJSON, otherJSON string) {
		var svc corev1.Service
		if json.Unmarshal([]byte(svcJSON), &svc) != nil {
			return
		}
		var slices []*discoveryv1.EndpointSlice
		var s discoveryv1.EndpointSlice
		if json.Unmarshal([]byte(sliceJSON), &s) == nil {
			slices = append(slices, &s)
		}
		values, err := portsOf(&svc, slices)
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
				checkServicePort(t, key, sp)
			}
		}
		var other corev1.Service
		if json.Unmarshal([]byte(otherJSON), &other) != nil {
			return
		}
		checkOneOwner(t, &svc, &other, slices)
	})
}

// checkOneOwner feeds a Model the Service, its twin and other, then
// deletes the Service, and checks after each change that the entries in
// force claim no frontend twice, that they still pass the agents' check
// and that every address left out is a reported conflict.
func checkOneOwner(t *testing.T, svc, other *corev1.Service, sl []*discoveryv1.EndpointSlice) {
	t.Helper()
	twin := svc.DeepCopy()
	twin.Name += "-twin"
	twin.UID += "-twin"
	twin.CreationTimestamp.Time = twin.CreationTimestamp.Add(-time.Second)
	m := New()
	view := map[string]Result{}
	steps := []func() []Result{
		func() []Result { return m.SetService(svc) },
		func() []Result { return m.SetService(twin) },
		func() []Result { return m.SetService(other) },
	}
	for _, s := range sl {
		steps = append(steps, func() []Result { return m.SetSlice(s) })
	}
	steps = append(steps, func() []Result { return m.DeleteService(svc.Namespace, svc.Name) })
	for i, step := range steps {
		for _, r := range step() {
			view[r.Service] = r
		}
		claimed := map[Frontend]string{}
		conflicts := 0
		for id, r := range view {
			conflicts += len(r.Conflicts)
			for key, v := range r.Values {
				checkServicePort(t, key, v.Default)
				for f := range frontendsOf(map[string]Value{key: v}) {
					if prev, dup := claimed[f]; dup {
						t.Fatalf("step %d: %s is claimed by %s and by %s", i, f, prev, key)
					}
					claimed[f] = key
				}
			}
			for _, c := range r.Conflicts {
				if owner := view[c.Owner]; c.Owner == id || !holds(owner, c.Frontend) {
					t.Fatalf("step %d: %s: conflict %s, but %s does not hold it", i, id, c, c.Owner)
				}
			}
		}
		if conflicts != m.ConflictCount() {
			t.Fatalf("step %d: ConflictCount %d, Results hold %d", i, m.ConflictCount(), conflicts)
		}
	}
}

func holds(r Result, f Frontend) bool {
	_, ok := frontendsOf(r.Values)[f]
	return ok
}

// checkServicePort checks a value as the entry the view would send: under
// key, with the digest of its value, by the agents' validator.
func checkServicePort(t *testing.T, key string, sp *doormanv1.ServicePort) {
	t.Helper()
	if sp == nil {
		t.Errorf("%s: nil value", key)
		return
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Errorf("%s: digest: %v", key, err)
		return
	}
	e := &doormanv1.Entry{Key: key, Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
	if err := doormanv1.ValidateEntry(e); err != nil {
		t.Errorf("the model produced an entry agents refuse: %v", err)
	}
}

// portsSeeds are a Service and an EndpointSlice of it, as JSON.
var portsSeeds = [][2]string{
	{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"type":"NodePort","clusterIP":"10.0.0.10","clusterIPs":["10.0.0.10"],"ports":[{"name":"http","protocol":"TCP","port":80,"targetPort":"http","nodePort":30080}]}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"name":"http","protocol":"TCP","port":8080}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":true},"nodeName":"n1"}]}`},
	{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"clusterIP":"fd00::10","clusterIPs":["fd00::10","10.0.0.10"],"ipFamilies":["IPv6","IPv4"],"ports":[{"protocol":"UDP","port":53,"targetPort":53}],"externalIPs":["192.0.2.1","not-an-ip"],"loadBalancerSourceRanges":["10.0.0.0/8","x"],"internalTrafficPolicy":"Local","externalTrafficPolicy":"Local","healthCheckNodePort":70000,"sessionAffinity":"ClientIP"}}`,
		`{"metadata":{"namespace":"ns","name":"web-2","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv6","ports":[{"protocol":"UDP","port":0}],"endpoints":[{"addresses":["fd01::1","fd01::1","10.1.0.1"],"conditions":{"ready":false,"serving":true,"terminating":true},"hints":{"forZones":[{"name":"a"}]}}]}`},
	{`{"metadata":{"namespace":"ns","name":"web"},"spec":{"clusterIP":"10.0.0.10","ports":[{"name":"a","protocol":"SCTP","port":65536,"targetPort":"missing"}]}}`, `{}`},
	{`{"metadata":{"namespace":"ns","name":"lb"},"spec":{"type":"LoadBalancer","clusterIP":"fd00::10","clusterIPs":["fd00::10","10.0.0.10"],"ports":[{"port":80,"nodePort":30080}],"loadBalancerSourceRanges":["::ffff:10.0.0.0/104","fd00::/8"],"externalIPs":["::ffff:192.0.2.1"],"sessionAffinity":"ClientIP","sessionAffinityConfig":{"clientIP":{"timeoutSeconds":86400}}},"status":{"loadBalancer":{"ingress":[{"ip":"2001:db8::1"},{"ip":"::ffff:198.51.100.1"}]}}}`,
		`{"metadata":{"namespace":"ns","name":"lb-1","labels":{"kubernetes.io/service-name":"lb"}},"addressType":"IPv6","ports":[{"port":8080}],"endpoints":[{"addresses":["::ffff:10.1.0.1"]},{"addresses":["fd01::2"],"nodeName":"n1"}]}`},
}
