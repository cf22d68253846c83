package metrics

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func ep(ip string) *doormanv1.Endpoint { return &doormanv1.Endpoint{Ip: ip, Port: 8080} }

// sp is a ClusterIP ServicePort of one IPv4 endpoint, changed by mods.
func sp(name string, mods ...func(*doormanv1.ServicePort)) *doormanv1.ServicePort {
	s := &doormanv1.ServicePort{Namespace: "default", Name: name, PortName: "http", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.10", Port: 80, Endpoints: []*doormanv1.Endpoint{ep("10.244.1.2")}}
	for _, m := range mods {
		m(s)
	}
	return s
}

func spEntry(s *doormanv1.ServicePort) *doormanv1.Entry {
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(s), Value: &doormanv1.Entry_ServicePort{ServicePort: s}}
}

var (
	noEndpoints = func(s *doormanv1.ServicePort) { s.Endpoints = nil }
	nodePort    = func(s *doormanv1.ServicePort) { s.NodePort = 30080 }
	ipv6        = func(s *doormanv1.ServicePort) {
		s.Family, s.ClusterIp, s.Endpoints = doormanv1.IPFamily_IP_FAMILY_IPV6, "fd00::10", []*doormanv1.Endpoint{ep("fd10::2")}
	}
	externalLocal = func(s *doormanv1.ServicePort) { s.ExternalPolicyLocal = true }
	localHere     = func(s *doormanv1.ServicePort) { s.LocalEndpoints = []*doormanv1.Endpoint{ep("10.244.1.2")} }
	// internalLocal: the endpoints become the cluster-wide set, none here.
	internalLocal = func(s *doormanv1.ServicePort) {
		s.InternalPolicyLocal, s.ClusterEndpoints, s.Endpoints = true, s.Endpoints, nil
	}
)

func TestDiffers(t *testing.T) {
	base := sp("web")
	for _, tc := range []struct {
		name                    string
		a, b                    *doormanv1.ServicePort
		wantService, wantEndpts bool
	}{
		{"equal", base, sp("web"), false, false},
		{"added with endpoints", nil, base, true, true},
		{"added without endpoints", nil, sp("web", noEndpoints), true, false},
		{"removed", base, nil, true, true},
		{"endpoint moved", base, sp("web", func(s *doormanv1.ServicePort) { s.Endpoints[0].Ip = "10.244.2.2" }), false, true},
		{"endpoint terminating", base, sp("web", func(s *doormanv1.ServicePort) { s.Endpoints[0].Terminating = true }), false, true},
		{"local endpoints", base, sp("web", localHere), false, true},
		{"trigger time", base, sp("web", func(s *doormanv1.ServicePort) { s.TriggerTimeUnixNano = 7 }), false, true},
		{"node port", base, sp("web", nodePort), true, false},
		{"policy and endpoints", base, sp("web", internalLocal), true, true},
		{"node entries", nil, nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			service, endpoints := differs(tc.a, tc.b)
			if service != tc.wantService || endpoints != tc.wantEndpts {
				t.Errorf("differs = service %v endpoints %v, want %v %v", service, endpoints, tc.wantService, tc.wantEndpts)
			}
		})
	}
	fields := (&doormanv1.ServicePort{}).ProtoReflect().Descriptor().Fields()
	for name := range endpointFields {
		if fields.ByName(name) == nil {
			t.Errorf("endpoint field %q is not a ServicePort field", name)
		}
	}
}

func TestNoLocalEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name               string
		sp                 *doormanv1.ServicePort
		internal, external bool
	}{
		{"cluster policies", sp("web", nodePort), false, false},
		{"external Local, endpoints elsewhere only", sp("web", nodePort, externalLocal), false, true},
		{"external Local, endpoints here", sp("web", nodePort, externalLocal, localHere), false, false},
		{"external Local, no endpoints anywhere", sp("web", nodePort, externalLocal, noEndpoints), false, false},
		{"internal Local with a NodePort, endpoints elsewhere only", sp("web", nodePort, internalLocal), true, false},
		{"internal Local with a NodePort, no endpoints anywhere", sp("web", nodePort, noEndpoints, internalLocal), false, false},
		{"internal Local, endpoints here", sp("web", internalLocal, func(s *doormanv1.ServicePort) { s.Endpoints = s.ClusterEndpoints[:1] }), false, false},
		// ClusterIP only: the view has no cluster-wide set to tell.
		{"internal Local, ClusterIP only, none here", sp("web", internalLocal), true, false},
		{"both Local, endpoints elsewhere only", sp("web", nodePort, internalLocal, externalLocal), true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			internal, external := noLocalEndpoints(tc.sp)
			if internal != tc.internal || external != tc.external {
				t.Errorf("noLocalEndpoints = internal %v external %v, want %v %v", internal, external, tc.internal, tc.external)
			}
		})
	}
}

// fakeKernel commits unless err is set; during runs inside each call.
type fakeKernel struct {
	err    error
	during func()
}

func (k *fakeKernel) call() error {
	if k.during != nil {
		k.during()
	}
	return k.err
}

func (k *fakeKernel) Sync(map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	return dataplane.Stats{}, k.call()
}

func (k *fakeKernel) Apply([]dataplane.Change) (dataplane.Stats, error) {
	return dataplane.Stats{}, k.call()
}

func (k *fakeKernel) RetireUnused() (int, error) { return 0, nil }

func TestRulesKernel(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := NewRules(reg)
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeKernel{}
	k := r.Kernel(fake)
	series := func(services, endpoints, servicesPending, endpointsPending, externalV4, internalV6 float64) map[string]float64 {
		return map[string]float64{
			"kubeproxy_sync_proxy_rules_service_changes_total":                                                services,
			"kubeproxy_sync_proxy_rules_endpoint_changes_total":                                               endpoints,
			"kubeproxy_sync_proxy_rules_service_changes_pending":                                              servicesPending,
			"kubeproxy_sync_proxy_rules_endpoint_changes_pending":                                             endpointsPending,
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="external"}`: externalV4,
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv4",traffic_policy="internal"}`: 0,
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv6",traffic_policy="external"}`: 0,
			`kubeproxy_sync_proxy_rules_no_local_endpoints_total{ip_family="IPv6",traffic_policy="internal"}`: internalV6,
		}
	}
	check := func(step string, want map[string]float64) {
		t.Helper()
		if diff := cmp.Diff(want, scrape(t, reg, "kubeproxy_sync_proxy_rules_")); diff != "" {
			t.Errorf("%s: series (-want +got):\n%s", step, diff)
		}
	}
	check("start", series(0, 0, 0, 0, 0, 0))

	web := spEntry(sp("web", nodePort, externalLocal)) // no local endpoint: external, IPv4
	db := spEntry(sp("db", ipv6, internalLocal))       // ClusterIP only, none here: internal, IPv6
	empty := spEntry(sp("empty", noEndpoints))         // a Service change only
	node := &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "n1"}}}
	view := map[string]*doormanv1.Entry{web.Key: web, db.Key: db, empty.Key: empty, node.Key: node}
	if _, err := k.Sync(view); err != nil {
		t.Fatal(err)
	}
	check("first sync: every entry is new", series(3, 2, 0, 0, 1, 1))

	// An Apply that gives web a local endpoint: pending while under way,
	// counted once committed.
	webHere := spEntry(sp("web", nodePort, externalLocal, localHere))
	fake.during = func() { check("during the apply", series(3, 2, 0, 1, 1, 1)) }
	if _, err := k.Apply([]dataplane.Change{{Key: web.Key, Old: web, New: webHere}}); err != nil {
		t.Fatal(err)
	}
	fake.during = nil
	check("apply committed", series(3, 3, 0, 0, 0, 1))

	// A failed Apply leaves its changes pending; the Sync that follows
	// counts them once.
	fake.err = errors.New("EPERM")
	webPort := spEntry(sp("web", nodePort, externalLocal, localHere, func(s *doormanv1.ServicePort) { s.NodePort = 30081 }))
	dbGone := dataplane.Change{Key: db.Key, Old: db}
	if _, err := k.Apply([]dataplane.Change{{Key: web.Key, Old: webHere, New: webPort}, dbGone}); err == nil {
		t.Fatal("want the injected error")
	}
	check("apply failed", series(3, 3, 2, 1, 0, 1))
	fake.err = &dataplane.InvalidEntriesError{Entries: map[string]error{empty.Key: errors.New("cannot render")}}
	view = map[string]*doormanv1.Entry{web.Key: webPort, empty.Key: empty, node.Key: node}
	if _, err := k.Sync(view); err == nil {
		t.Fatal("want the partial error")
	}
	check("sync committed, one entry left out", series(5, 4, 0, 0, 0, 0))

	// A resync of an unchanged view (a drift repair) changes nothing.
	fake.err = nil
	if _, err := k.Sync(view); err != nil {
		t.Fatal(err)
	}
	check("resync", series(5, 4, 0, 0, 0, 0))
}
