package model

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// checkByNode checks that the Service's ports sent by node, assembled on
// every node the slices name (and on one they do not), are the values the
// ports sent whole give those nodes, and that every value sent by node is
// one an agent accepts.
func checkByNode(t *testing.T, svc *corev1.Service, sl []*discoveryv1.EndpointSlice, zone string) {
	t.Helper()
	forms := make([]*compact.Slice, len(sl))
	nodes := []string{"a-node-with-none"}
	for i, s := range sl {
		forms[i] = compact.FromSlice(s)
		for _, e := range s.Endpoints {
			if e.NodeName != nil {
				nodes = append(nodes, *e.NodeName)
			}
		}
	}
	whole, errWhole := Ports(compact.FromService(svc), forms)
	byNode, errByNode := PortsByNode(compact.FromService(svc), forms)
	if errString(errWhole) != errString(errByNode) {
		t.Fatalf("errors differ: whole %v, by node %v", errWhole, errByNode)
	}
	shards := map[string][]*doormanv1.ServicePort{}
	for key, v := range byNode {
		checkServicePort(t, key, v.Default)
		byNodeForm := v.Default.GetShard() || v.Default.GetEndpointsByNode()
		if byNodeForm && v.Default.GetTriggerTimeUnixNano() != 0 {
			t.Errorf("%s: sent by node, with a trigger time in the entry", key)
		}
		if !byNodeForm && v.Trigger != 0 {
			t.Errorf("%s: sent whole, with a trigger time beside the entry", key)
		}
		if parent, ok := doormanv1.ShardParent(key); ok && v.Trigger != byNode[parent].Trigger {
			t.Errorf("shard %s: trigger time %d, its port's %d", key, v.Trigger, byNode[parent].Trigger)
		}
		if len(v.ByNode)+len(v.ByZone) > 0 && (v.Default.GetShard() || v.Default.GetEndpointsByNode()) {
			t.Errorf("%s: sent by node, with overrides", key)
		}
		if v.Default.GetShard() {
			parent, ok := doormanv1.ShardParent(key)
			if !ok || byNode[parent].Default == nil || !byNode[parent].Default.GetEndpointsByNode() {
				t.Errorf("shard %s: no port sent by node under %q", key, parent)
			}
			shards[parent] = append(shards[parent], v.Default)
		}
	}
	for key, w := range whole {
		b, ok := byNode[key]
		if !ok {
			t.Errorf("%s: sent whole, missing by node", key)
			continue
		}
		local := w.Default.GetInternalPolicyLocal() || w.Default.GetExternalPolicyLocal()
		if b.Default.GetEndpointsByNode() != local {
			t.Errorf("%s: endpoints_by_node %v, want %v (a Local traffic policy)", key, b.Default.GetEndpointsByNode(), local)
		}
		for _, n := range nodes {
			want := w.For(n, zone)
			got := b.For(n, zone)
			if got.GetEndpointsByNode() {
				got = doormanv1.AssembleServicePort(got, shards[key], n)
				// The update brings the trigger time beside the entries.
				got.TriggerTimeUnixNano = b.Trigger
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("%s on node %s: assembled (-whole +by node):\n%s", key, n, diff)
			}
		}
	}
	for key, v := range byNode {
		if _, ok := whole[key]; !ok && !v.Default.GetShard() {
			t.Errorf("%s: by node only, and not a shard", key)
		}
	}
}

func TestPortsByNodeAssembleToPorts(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	local := func(ext, internal bool, typ corev1.ServiceType, ips ...string) svcOpt {
		return func(s *corev1.Service) {
			s.Spec.Type = typ
			if ext {
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}
			if internal {
				s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
			}
			if typ != corev1.ServiceTypeClusterIP {
				s.Spec.Ports[0].NodePort = 30080
				s.Spec.HealthCheckNodePort = 31000
			}
			s.Spec.ExternalIPs = ips
		}
	}
	everyKind := []ep{
		{ip: "10.1.0.3", node: "n1", ready: yes},
		{ip: "10.1.0.1", node: "n2", ready: yes},
		{ip: "10.1.0.2", node: "n2", ready: no, serving: yes, terminating: true},
		{ip: "10.1.0.4", node: "n3", ready: no, serving: yes, terminating: true},
		{ip: "10.1.0.5", node: "n4", ready: no, serving: no},
		{ip: "10.1.0.6", ready: yes},
	}
	allTerminating := []ep{
		{ip: "10.1.0.1", node: "n1", ready: no, serving: yes, terminating: true},
		{ip: "10.1.0.2", node: "n2", ready: no, serving: yes, terminating: true},
	}
	tests := []struct {
		name string
		svc  *corev1.Service
		eps  []ep
	}{
		{"cluster policy", svc(local(false, false, corev1.ServiceTypeNodePort)), everyKind},
		{"external Local NodePort", svc(local(true, false, corev1.ServiceTypeNodePort)), everyKind},
		{"internal Local ClusterIP", svc(local(false, true, corev1.ServiceTypeClusterIP)), everyKind},
		{"internal Local with externalIPs", svc(local(false, true, corev1.ServiceTypeClusterIP, "192.0.2.1")), everyKind},
		{"both Local LoadBalancer", svc(local(true, true, corev1.ServiceTypeLoadBalancer)), everyKind},
		{"both Local, every endpoint terminating", svc(local(true, true, corev1.ServiceTypeNodePort)), allTerminating},
		{"external Local without endpoints", svc(local(true, false, corev1.ServiceTypeNodePort)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := slice("web-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, tt.eps...)
			// The same endpoints listed again by a second slice count once.
			again := slice("web-2", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, tt.eps...)
			checkByNode(t, tt.svc, []*discoveryv1.EndpointSlice{s, again}, "")
		})
	}
}

// An endpoint's change on one node changes that node's shard only: the
// port's own value and every other shard keep their digests.
func TestPortsByNodeOneEndpointOneShard(t *testing.T) {
	yes := ptr(true)
	var before, after []ep
	for i := range 50 {
		e := ep{ip: fmt.Sprintf("10.1.0.%d", i+1), node: fmt.Sprintf("n%d", i), ready: yes}
		before = append(before, e)
		if i == 7 {
			e.ready = ptr(false)
		}
		after = append(after, e)
	}
	s := svc(func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	})
	compute := func(e []ep) map[string]uint64 {
		v, err := PortsByNode(compact.FromService(s), []*compact.Slice{compact.FromSlice(slice("web-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, e...))})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]uint64{}
		for key, val := range v {
			d, err := doormanv1.ValueDigest(val.Default)
			if err != nil {
				t.Fatal(err)
			}
			out[key] = d
		}
		return out
	}
	b, a := compute(before), compute(after)
	var changed []string
	for key := range b {
		if a[key] != b[key] {
			changed = append(changed, key)
		}
	}
	for key := range a {
		if _, ok := b[key]; !ok {
			changed = append(changed, key)
		}
	}
	slices.Sort(changed)
	if want := []string{"ns/web:http/tcp/ipv4@n7"}; !slices.Equal(changed, want) {
		t.Errorf("changed keys %v, want %v", changed, want)
	}
}

// FuzzPortsByNode: for any Service and slices, the ports sent by node,
// assembled on each node, are the values the ports sent whole give it, and
// every value sent is one an agent accepts.
func FuzzPortsByNode(f *testing.F) {
	for _, seed := range append(append([][2]string(nil), portsSeeds...), compactSeeds...) {
		f.Add(seed[0], seed[1], seed[1])
	}
	f.Add(`{"metadata":{"namespace":"ns","name":"web"},"spec":{"type":"LoadBalancer","clusterIP":"10.0.0.10","ports":[{"port":80,"nodePort":30080}],"externalTrafficPolicy":"Local","internalTrafficPolicy":"Local","healthCheckNodePort":31000}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":true},"nodeName":"n1"},{"addresses":["10.1.0.2"],"conditions":{"ready":false,"serving":true,"terminating":true},"nodeName":"n2"},{"addresses":["10.1.0.3"]}]}`,
		`{"metadata":{"namespace":"ns","name":"web-2","labels":{"kubernetes.io/service-name":"web"}},"addressType":"IPv4","ports":[{"port":8081}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":false},"nodeName":"n3"}]}`)
	f.Add(`{"metadata":{"namespace":"ns","name":"web"},"spec":{"type":"NodePort","clusterIP":"10.0.0.10","ports":[{"port":80,"nodePort":30080}],"externalTrafficPolicy":"Local"}}`,
		`{"metadata":{"namespace":"ns","name":"web-1","labels":{"kubernetes.io/service-name":"web"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-12-06T10:00:00.5Z"}},"addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.1.0.1"],"conditions":{"ready":true},"nodeName":"n1"}]}`,
		`{"metadata":{"namespace":"ns","name":"web-2","labels":{"kubernetes.io/service-name":"web"},"annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"2026-12-06T10:00:01Z"}},"addressType":"IPv4","ports":[{"port":8080}],"endpoints":[{"addresses":["10.1.0.2"],"conditions":{"ready":true},"nodeName":"n2"}]}`)
	f.Fuzz(func(t *testing.T, svcJSON, sliceJSON, otherSliceJSON string) {
		var svc corev1.Service
		if json.Unmarshal([]byte(svcJSON), &svc) != nil {
			return
		}
		var sl []*discoveryv1.EndpointSlice
		for _, raw := range []string{sliceJSON, otherSliceJSON} {
			var s discoveryv1.EndpointSlice
			if json.Unmarshal([]byte(raw), &s) == nil {
				sl = append(sl, &s)
			}
		}
		for _, s := range sl {
			for _, e := range s.Endpoints {
				if e.NodeName != nil && strings.Contains(*e.NodeName, doormanv1.ShardSeparator) {
					return // not a node name the API server accepts
				}
			}
		}
		checkByNode(t, &svc, sl, "")
	})
}
