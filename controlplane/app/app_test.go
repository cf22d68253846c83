package app

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func ptr[T any](v T) *T { return &v }

func TestRun(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.0.0.10", ClusterIPs: []string{"10.0.0.10"},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080}}},
		},
		&discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}},
		},
		&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n1"},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}, {Type: corev1.NodeExternalIP, Address: "203.0.113.2"}}},
		},
	)
	gl, hl := listenLoopback(t), listenLoopback(t)
	run := startRun(t, Config{Client: client, GRPCListener: gl, HTTPListener: hl, NodePortAddresses: []string{"172.16.0.0/12"}, VersionSeed: 42})
	get := func(path string) int {
		resp, err := http.Get("http://" + hl.Addr().String() + path)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz not ok within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}

	cc, stream := run.syncAs(t, gl.Addr().String(), "n1")
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetFull() || r.GetVersion() <= 42 || len(r.GetUpserts()) != 2 {
		t.Fatalf("first update %v", r)
	}
	for _, e := range r.GetUpserts() {
		switch e.GetKey() {
		case doormanv1.NodeKey:
			if got := e.GetNode().GetNodeportAddresses(); !slices.Equal(got, []string{"172.18.0.2"}) {
				t.Errorf("nodeport addresses %v, want the one inside --nodeport-addresses", got)
			}
		case "ns/web:http/tcp/ipv4":
			sp := e.GetServicePort()
			if sp.GetNodePort() != 30080 || len(sp.GetEndpoints()) != 1 || sp.GetEndpoints()[0].GetIp() != "10.1.0.1" {
				t.Errorf("service port %v", sp)
			}
		default:
			t.Errorf("unexpected entry %s", e.GetKey())
		}
	}

	refl, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(run.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	rr, err := refl.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range rr.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"doorman.v1.AgentService", "doorman.v1.InspectService"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}

	run.stop(t)
}
