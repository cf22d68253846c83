package hub

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/internal/testlog"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestInvalidServiceLeftOut: a Service with an IPv4-mapped
// loadBalancerSourceRange (as an API server before 1.36 stored it) is
// left out of every node's view, logged by name with the reason, and the
// Services around it reach the nodes; every entry a node is sent passes
// the agents' validator.
func TestInvalidServiceLeftOut(t *testing.T) {
	var logs testlog.Buffer
	h := New(Config{VersionSeed: 1, Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})})
	lb := func(name string, ranges ...string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.0.0.10", "fd00::10"},
				Ports:                    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}},
				LoadBalancerSourceRanges: ranges,
			},
		}
	}
	h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}}}})
	h.SetService(lb("before", "10.0.0.0/8"))
	h.SetService(lb("bad", "10.0.0.0/8", "fd00::/8"))
	if _, err := h.Service("ns", "bad"); err != nil {
		t.Fatalf("the Service while valid: %v", err)
	}
	h.SetService(lb("bad", "10.0.0.0/8", "::ffff:10.0.0.0/104"))
	h.SetService(lb("after", "fd00::/8"))
	h.MarkReady()

	if _, err := h.Service("ns", "bad"); !errors.Is(err, ErrNoService) {
		t.Errorf("the invalid Service: %v, want its entries gone (ErrNoService)", err)
	}
	for _, name := range []string{"before", "after"} {
		if ne, err := h.Service("ns", name); err != nil || len(ne) != 1 || len(ne[0].Entries) != 2 {
			t.Errorf("Service %s: %v, %v; want its two entries on n1", name, ne, err)
		}
	}
	view, err := h.NodeView("n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range view.Entries {
		m, err := e.Message()
		if err != nil {
			t.Fatal(err)
		}
		if err := doormanv1.ValidateEntry(m); err != nil {
			t.Errorf("n1 is sent an entry agents refuse: %v", err)
		}
	}
	out := logs.String()
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "skipping invalid objects") {
			line = l
		}
	}
	if !strings.Contains(line, "service=ns/bad") || !strings.Contains(line, "::ffff:10.0.0.0/104") {
		t.Errorf("log %q, want a line naming ns/bad and the range", out)
	}
	if strings.Count(out, "skipping invalid objects") != 1 {
		t.Errorf("log %q: want the invalid Service reported once for its one change", out)
	}
}
