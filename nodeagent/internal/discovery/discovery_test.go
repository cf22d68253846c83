package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/nodeagent/internal/kube/kubetest"
)

type ep struct {
	addr  string
	ready *bool
}

func slice(name, svc string, family discoveryv1.AddressType, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "doorman-system", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: family,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(n), Port: ptr.To(p)})
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}})
	}
	return s
}

func TestAddresses(t *testing.T) {
	v4, v6, fqdn := discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN
	grpcPorts := map[string]int32{"grpc": 9400, "http": 9401}
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []string
	}{
		{"none", nil, nil},
		{"ready, unset and not ready", []*discoveryv1.EndpointSlice{
			slice("a", "cp", v4, grpcPorts, ep{"10.0.0.2", ptr.To(true)}, ep{"10.0.0.1", nil}, ep{"10.0.0.3", ptr.To(false)}),
		}, []string{"10.0.0.1:9400", "10.0.0.2:9400"}},
		{"several slices, duplicates once, IPv6 bracketed", []*discoveryv1.EndpointSlice{
			slice("a", "cp", v4, grpcPorts, ep{"10.0.0.5", nil}),
			slice("b", "cp", v4, grpcPorts, ep{"10.0.0.5", nil}, ep{"10.0.0.4", nil}),
			slice("c", "cp", v6, grpcPorts, ep{"fd00::1", nil}),
		}, []string{"10.0.0.4:9400", "10.0.0.5:9400", "[fd00::1]:9400"}},
		{"slice without the port", []*discoveryv1.EndpointSlice{
			slice("a", "cp", v4, map[string]int32{"http": 9401}, ep{"10.0.0.1", nil}),
		}, nil},
		{"FQDN and bad addresses skipped", []*discoveryv1.EndpointSlice{
			slice("a", "cp", fqdn, grpcPorts, ep{"cp.example", nil}),
			slice("b", "cp", v4, grpcPorts, ep{"not-an-ip", nil}, ep{"10.0.0.9", nil}),
		}, []string{"10.0.0.9:9400"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Addresses(tc.slices, "grpc")); diff != "" {
				t.Errorf("Addresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseService(t *testing.T) {
	tests := []struct {
		in      string
		want    Service
		wantErr bool
	}{
		{in: "doorman-system/doorman-controlplane:grpc", want: Service{"doorman-system", "doorman-controlplane", "grpc"}},
		{in: "doorman-controlplane:grpc", wantErr: true},
		{in: "ns/name", wantErr: true},
		{in: "ns/name:", wantErr: true},
		{in: "NS/name:grpc", wantErr: true},
		{in: "ns/name:not a port", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseService(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseService (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWatcher: the address list follows the Service's slices as they are
// created, change readiness and go, and ignores other Services' slices.
func TestWatcher(t *testing.T) {
	ports := map[string]int32{"grpc": 9400}
	client := fake.NewClientset(
		slice("cp-1", "doorman-controlplane", discoveryv1.AddressTypeIPv4, ports, ep{"10.0.0.1", nil}),
		slice("other-1", "other", discoveryv1.AddressTypeIPv4, ports, ep{"10.0.9.9", nil}),
	)
	w, err := New(nil, kubetest.Clientset(client), Service{"doorman-system", "doorman-controlplane", "grpc"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		var got []string
		for time.Now().Before(deadline) {
			if got = w.Addresses(); cmp.Equal(want, got) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("addresses %v, want %v", got, want)
	}
	waitFor([]string{"10.0.0.1:9400"})

	slices := client.DiscoveryV1().EndpointSlices("doorman-system")
	if _, err := slices.Create(ctx, slice("cp-2", "doorman-controlplane", discoveryv1.AddressTypeIPv4, ports, ep{"10.0.0.2", nil}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slices.Create(ctx, slice("other-2", "other", discoveryv1.AddressTypeIPv4, ports, ep{"10.0.9.8", nil}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor([]string{"10.0.0.1:9400", "10.0.0.2:9400"})

	if _, err := slices.Update(ctx, slice("cp-1", "doorman-controlplane", discoveryv1.AddressTypeIPv4, ports, ep{"10.0.0.1", ptr.To(false)}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor([]string{"10.0.0.2:9400"})

	if err := slices.Delete(ctx, "cp-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(nil)
}
