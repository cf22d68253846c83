package server

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestInspectShowsConflicts: GetService lists the addresses a Service is
// sent without and who owns them; the owner lists none.
func TestInspectShowsConflicts(t *testing.T) {
	e := newEnv(t, 0)
	for i, name := range []string{"old", "new"} {
		s := service(name)
		s.CreationTimestamp = metav1.Unix(int64(i), 0)
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "", []string{[]string{"10.0.0.1", "10.0.0.2"}[i]}
		s.Spec.ExternalIPs = []string{"192.0.2.1"}
		e.hub.SetService(s)
	}
	ins := doormanv1.NewInspectServiceClient(e.cc)
	got, err := ins.GetService(context.Background(), &doormanv1.GetServiceRequest{Namespace: "ns", Name: "new"})
	if err != nil {
		t.Fatal(err)
	}
	want := []*doormanv1.AddressConflict{{
		Address: "192.0.2.1", Protocol: doormanv1.Protocol_PROTOCOL_TCP, Port: 80,
		Claim: "externalIP", Owner: "ns/old", OwnerClaim: "externalIP",
	}}
	if diff := cmp.Diff(want, got.GetAddressConflicts(), protocmp.Transform()); diff != "" {
		t.Errorf("ns/new conflicts (-want +got):\n%s", diff)
	}
	for _, n := range got.GetNodes() {
		for _, en := range n.GetEntries() {
			if ips := en.GetServicePort().GetExternalIps(); len(ips) != 0 {
				t.Errorf("node %s is sent ns/new with externalIPs %v", n.GetNodeName(), ips)
			}
		}
	}
	old, err := ins.GetService(context.Background(), &doormanv1.GetServiceRequest{Namespace: "ns", Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if c := old.GetAddressConflicts(); len(c) != 0 {
		t.Errorf("the owner lists conflicts %v", c)
	}
}
