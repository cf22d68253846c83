package events

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestRecorderPostsEvents: a conflict and a refusal reach the API server
// as Warning Events on the Service, with the reason, the address,
// protocol and port, the owner, and this replica as source host.
func TestRecorderPostsEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset()
	r := Start(ctx, Config{Client: client, Host: "controlplane-0"})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant", Name: "web", UID: "u1"}}
	c := model.Conflict{
		Frontend: model.Frontend{Addr: netip.MustParseAddr("10.96.0.10"), Protocol: doormanv1.Protocol_PROTOCOL_UDP, Port: 53},
		Claim:    model.ClaimExternalIP, Owner: "kube-system/kube-dns", OwnerClaim: model.ClaimClusterIP,
	}
	r.AddressConflict(svc, c)
	r.InvalidService(svc, errors.New("service tenant/web: externalIPs: invalid IP address \"x\""))

	want := map[string]string{
		ReasonAddressConflict: "externalIP 10.96.0.10:53/udp is not programmed on any node: Service kube-system/kube-dns owns it as its ClusterIP (an externalIP or LoadBalancer IP never displaces a ClusterIP)",
		ReasonInvalidService:  `not programmed on any node: service tenant/web: externalIPs: invalid IP address "x"`,
	}
	var list *corev1.EventList
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		list, err = client.CoreV1().Events("tenant").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(list.Items) != len(want) {
		t.Fatalf("%d Events, want %d: %+v", len(list.Items), len(want), list.Items)
	}
	for _, e := range list.Items {
		if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "Service" || e.InvolvedObject.Name != "web" ||
			e.InvolvedObject.UID != "u1" || e.Source.Component != Component || e.Source.Host != "controlplane-0" {
			t.Errorf("Event %+v: want a Warning on Service tenant/web from %s on controlplane-0", e, Component)
		}
		if e.Message != want[e.Reason] {
			t.Errorf("%s: message %q, want %q", e.Reason, e.Message, want[e.Reason])
		}
	}
}

// TestConflictMessage: the rule named depends on who won.
func TestConflictMessage(t *testing.T) {
	c := model.Conflict{
		Frontend: model.Frontend{Addr: netip.MustParseAddr("192.0.2.1"), Protocol: doormanv1.Protocol_PROTOCOL_TCP, Port: 443},
		Claim:    model.ClaimLoadBalancerIP, Owner: "a/old", OwnerClaim: model.ClaimExternalIP,
	}
	got := ConflictMessage(c)
	if !strings.HasPrefix(got, "LoadBalancer IP 192.0.2.1:443/tcp is not programmed on any node: Service a/old owns it as its externalIP") ||
		!strings.Contains(got, "older Service") {
		t.Errorf("message %q", got)
	}
}
