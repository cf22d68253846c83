//go:build e2e

package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/retry"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// hostile is one malformed or hostile input the API server accepts.
type hostile struct {
	name   string // Service name (in the bad-input namespace)
	what   string
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	// endpoints a node must hold for the Service when doorman programs it
	// (0: any); checked in the agent's view.
	endpoints int
}

func selectorless(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func tcp(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(8080)}
}

func slice(svc, name string, family discoveryv1.AddressType, port *int32, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: svc,
			discoveryv1.LabelManagedBy:   "faults.e2e.doorman",
		}},
		AddressType: family,
		Ports:       []discoveryv1.EndpointPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: port}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func hostileInputs() []hostile {
	p8080 := ptr.To[int32](8080)
	long63 := "l" + strings.Repeat("o", 61) + "g"
	var big []*discoveryv1.EndpointSlice
	for s := range 10 {
		var addrs []string
		for i := range 1000 {
			n := s*1000 + i
			addrs = append(addrs, fmt.Sprintf("10.210.%d.%d", n/250, 1+n%250))
		}
		big = append(big, slice("big", fmt.Sprintf("big-%d", s), discoveryv1.AddressTypeIPv4, p8080, addrs...))
	}
	return []hostile{
		{
			name: "dup", what: "duplicate endpoints within a slice and across two slices",
			svc: selectorless("dup", tcp("", 80)),
			slices: []*discoveryv1.EndpointSlice{
				slice("dup", "dup-a", discoveryv1.AddressTypeIPv4, p8080, "10.211.0.1", "10.211.0.1", "10.211.0.2"),
				slice("dup", "dup-b", discoveryv1.AddressTypeIPv4, p8080, "10.211.0.2", "10.211.0.1"),
			},
			endpoints: 2,
		},
		{
			name: "big", what: "10,000 endpoints in ten slices of 1,000",
			svc: selectorless("big", tcp("", 80)), slices: big, endpoints: 10000,
		},
		{
			name: long63, what: "name of 63 characters, port name of 15",
			svc:    selectorless(long63, tcp("p"+strings.Repeat("x", 13)+"p", 80)),
			slices: []*discoveryv1.EndpointSlice{slice(long63, "long-1", discoveryv1.AddressTypeIPv4, p8080, "10.212.0.1")},
		},
		{
			name: "mixed", what: "IPv4-only Service with an IPv6 slice and an FQDN slice",
			svc: selectorless("mixed", tcp("", 80)),
			slices: []*discoveryv1.EndpointSlice{
				slice("mixed", "mixed-v4", discoveryv1.AddressTypeIPv4, p8080, "10.213.0.1"),
				slice("mixed", "mixed-v6", discoveryv1.AddressTypeIPv6, p8080, "fd00::1"),
				slice("mixed", "mixed-fqdn", discoveryv1.AddressTypeFQDN, p8080, "example.com"),
			},
		},
		{
			name: "ports", what: "ports at the limits: 1 and 65535, NodePorts 30000 and 32767, a slice port left unset",
			svc: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "ports"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{
					{Name: "low", Protocol: corev1.ProtocolTCP, Port: 1, TargetPort: intstr.FromInt32(65535), NodePort: 30000},
					{Name: "high", Protocol: corev1.ProtocolTCP, Port: 65535, TargetPort: intstr.FromInt32(1), NodePort: 32767},
				}},
			},
			slices: []*discoveryv1.EndpointSlice{
				slice("ports", "ports-1", discoveryv1.AddressTypeIPv4, nil, "10.214.0.1"),
			},
		},
		{
			name: "noports", what: "selector-less Service whose slice names a port the Service lacks, and an empty slice",
			svc: selectorless("noports", tcp("web", 80)),
			slices: []*discoveryv1.EndpointSlice{
				func() *discoveryv1.EndpointSlice {
					s := slice("noports", "noports-1", discoveryv1.AddressTypeIPv4, p8080, "10.215.0.1")
					s.Ports[0].Name = ptr.To("other")
					return s
				}(),
				slice("noports", "noports-empty", discoveryv1.AddressTypeIPv4, p8080),
			},
		},
	}
}

// Row 9: malformed and hostile Services and EndpointSlices that the API
// server accepts. Each is programmed or named in an error; nothing panics;
// the canary Service keeps answering throughout.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	cp := c.ControlPlaneGRPC()
	cs := c.Client()
	const bad = "faults-bad"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bad}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), bad, metav1.DeleteOptions{}) }()
	// The hostile objects go before the test ends, and every agent has
	// dropped them, so that no later test sees their removal.
	defer func() {
		ctx := context.Background()
		_ = cs.DiscoveryV1().EndpointSlices(bad).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		for _, h := range hostileInputs() {
			_ = cs.CoreV1().Services(bad).Delete(ctx, h.name, metav1.DeleteOptions{})
		}
		for _, n := range c.Nodes() {
			retry.Eventually(t, time.Minute, "agent on "+n.Name+" dropping "+bad, func() error {
				st, err := agentState(ctx, n.Name, true)
				if err != nil {
					return err
				}
				for _, e := range st.GetEntries() {
					if strings.HasPrefix(e.GetKey(), bad+"/") {
						return fmt.Errorf("still holds %s", e.GetKey())
					}
				}
				return converged(ctx, n.Name, cp)
			})
		}
	}()
	ls := loads{
		fromPod(t, "node1", addr(canaryIP, webPort)),
		fromPod(t, "node2", addr(canaryIP, webPort)),
		fromExternal(t, "node3"),
	}
	marks := []cluster.LogMark{cluster.MarkLog(c.ControlPlaneLog())}
	for _, n := range c.Nodes() {
		marks = append(marks, cluster.MarkLog(c.AgentLog(n.Name)))
	}

	inputs := hostileInputs()
	start := time.Now()
	for _, h := range inputs {
		h.svc.Namespace = bad
		if _, err := cs.CoreV1().Services(bad).Create(ctx, h.svc, metav1.CreateOptions{}); err != nil {
			t.Errorf("%s (%s): the API server refused the Service: %v", h.name, h.what, err)
			continue
		}
		var wg sync.WaitGroup
		for _, s := range h.slices {
			s.Namespace = bad
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := cs.DiscoveryV1().EndpointSlices(bad).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					t.Errorf("%s (%s): the API server refused slice %s: %v", h.name, h.what, s.Name, err)
				}
			}()
		}
		wg.Wait()
	}
	// Everything settles: every agent converged.
	for _, n := range c.Nodes() {
		waitConverged(t, n.Name, cp, 2*time.Minute)
	}
	t.Logf("every agent converged %s after the hostile objects were created", time.Since(start).Round(time.Millisecond))

	// Each object is either in every node's view and programmed, or named
	// in an error (control plane log, or the agents' not_programmed).
	cpText := marks[0].Since()
	for _, h := range inputs {
		id := bad + "/" + h.name
		named := strings.Contains(cpText, id)
		for _, n := range c.Nodes() {
			st, err := agentState(ctx, n.Name, true)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			eps := 0
			for _, e := range st.GetEntries() {
				if strings.HasPrefix(e.GetKey(), id+":") {
					keys = append(keys, e.GetKey())
					eps = max(eps, len(e.GetServicePort().GetEndpoints()))
				}
			}
			var notProgrammed []string
			for _, k := range st.GetNotProgrammed() {
				if strings.HasPrefix(k, id+":") {
					notProgrammed = append(notProgrammed, k)
				}
			}
			switch {
			case len(notProgrammed) > 0:
				t.Logf("%s on %s: %s — not programmed, reported: %v (last_error %q)", h.name, n.Name, h.what, notProgrammed, st.GetLastError())
			case len(keys) > 0:
				if n.Name == "node1" {
					t.Logf("%s: %s — programmed: %v, %d endpoints", h.name, h.what, keys, eps)
				}
				if h.endpoints > 0 && eps != h.endpoints {
					t.Errorf("%s on %s: %d endpoints, want %d", h.name, n.Name, eps, h.endpoints)
				}
			case named:
				if n.Name == "node1" {
					t.Logf("%s: %s — rejected by the control plane: %s", h.name, h.what, lineWith(cpText, id))
				}
			default:
				t.Errorf("%s on %s (%s): neither programmed nor named in an error", h.name, n.Name, h.what)
			}
		}
	}
	// The 10,000 endpoints reached the kernel.
	err := agentInspect(ctx, "node1", func(ctx context.Context, ic doormanv1.AgentInspectServiceClient) error {
		k, err := ic.GetKernel(ctx, &doormanv1.GetKernelRequest{})
		if err != nil {
			return err
		}
		for _, m := range k.GetMaps() {
			if m.GetName() == "service-endpoints" {
				t.Logf("node1 kernel: service-endpoints holds %d elements", m.GetElementCount())
				if m.GetElementCount() < 10000 {
					return fmt.Errorf("service-endpoints holds %d elements, want ≥ 10000", m.GetElementCount())
				}
				return nil
			}
		}
		return fmt.Errorf("no map service-endpoints")
	})
	if err != nil {
		t.Error(err)
	}
	agentsAlive(t)
	noPanics(t, marks...)
	ls.finish(t, 0)
}

func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			if i := strings.Index(l, "]"); i > 0 {
				l = strings.TrimSpace(l[i+1:])
			}
			return l
		}
	}
	return ""
}
