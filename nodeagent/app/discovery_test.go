package app

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/kube/kubetest"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func controlPlaneSlice(name string, port int, ready bool, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "doorman-system", Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: "doorman-controlplane"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(port))}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}})
	}
	return s
}

// TestDiscoveredControlPlane: without a static address, the agent finds
// the control plane through its Service's EndpointSlices: it waits while
// the only endpoint is not ready, connects once it is, and is acked.
func TestDiscoveredControlPlane(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	cp := serveControlPlane(t, lis)
	client := fake.NewClientset(controlPlaneSlice("cp-1", port, false, "127.0.0.1"))
	run := startAgentWith(t, ns, "", func(c *Config) {
		c.ControlPlaneService = "doorman-system/doorman-controlplane:grpc"
		c.Kubernetes = kubetest.Clientset(client)
	})
	select {
	case h := <-cp.hellos:
		t.Fatalf("hello %v through a not-ready endpoint", h)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := client.DiscoveryV1().EndpointSlices("doorman-system").Update(context.Background(),
		controlPlaneSlice("cp-1", port, true, "127.0.0.1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if h := receive(t, cp.hellos, "hello through the discovered address"); h.GetNodeName() != "node-1" {
		t.Errorf("hello from %q", h.GetNodeName())
	}
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack\nlogs:\n%s", r, run.logs.String())
	}
}

func TestJoinTargets(t *testing.T) {
	got := joinTargets([]string{"10.0.0.9:9400", "10.0.0.1:9400"}, []string{"10.0.0.1:9400", "10.0.0.2:9400"})
	want := []string{"10.0.0.9:9400", "10.0.0.1:9400", "10.0.0.2:9400"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("joinTargets (-want +got):\n%s", diff)
	}
}

// TestConfigErrors: a Config without a control plane, with a malformed
// service or without a Kubernetes client for it is refused at once.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no control plane", Config{NodeName: "n"}},
		{"malformed service", Config{NodeName: "n", ControlPlaneService: "doorman-controlplane", Kubernetes: kubetest.Clientset(fake.NewClientset())}},
		{"no client", Config{NodeName: "n", ControlPlaneService: "doorman-system/doorman-controlplane:grpc"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Run(context.Background(), tc.cfg); err == nil {
				t.Error("Run accepted the config")
			}
		})
	}
}
