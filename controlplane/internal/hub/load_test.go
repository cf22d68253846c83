package hub

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
)

// loadLists feeds a hub initial lists as informers deliver them: each
// Service, then its slices one by one.
func loadLists(h *Hub, services, slicesEach int) {
	h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.18.0.2"}}}})
	for i := range services {
		name := fmt.Sprintf("web-%d", i)
		ip := addrOf(10, i)
		h.SetService(&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{ip},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			},
		})
		for j := range slicesEach {
			h.SetSlice(&discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("%s-%d", name, j), Labels: map[string]string{model.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{addrOf(byte(100+j), i)}}},
				Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
			})
		}
	}
}

// addrOf is the i-th IPv4 address after first.0.0.0 (i below 2^24-1).
func addrOf(first byte, i int) string {
	i++
	return fmt.Sprintf("%d.%d.%d.%d", first, i>>16&0xff, i>>8&0xff, i&0xff)
}

func ptr[T any](v T) *T { return &v }

// TestLoadEncodesEachValueOnce: with Config.Load, the initial lists
// encode each Service's value once, at MarkReady, where fed one by one
// they encode it once per object; the nodes' views end the same.
func TestLoadEncodesEachValueOnce(t *testing.T) {
	const services, slicesEach = 40, 3
	oneByOne := New(Config{VersionSeed: 1})
	loadLists(oneByOne, services, slicesEach)
	oneByOne.MarkReady()

	loaded := New(Config{VersionSeed: 1, Load: true})
	loadLists(loaded, services, slicesEach)
	if st := loaded.Stats(); st.Keys != 0 {
		t.Fatalf("before MarkReady: %d keys in the view, want none", st.Keys)
	}
	loaded.MarkReady()

	if got, want := oneByOne.Stats().Marshals, uint64(1+services*(1+slicesEach)); got != want {
		t.Errorf("one by one: %d values encoded, want %d (the node, then each Service once per object)", got, want)
	}
	if got, want := loaded.Stats().Marshals, uint64(1+services); got != want {
		t.Errorf("loaded: %d values encoded, want %d (the node, then each Service once)", got, want)
	}
	want, err := oneByOne.NodeView("n1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := loaded.NodeView("n1")
	if err != nil {
		t.Fatal(err)
	}
	if want.ViewDigest != got.ViewDigest || len(got.Entries) != 1+services {
		t.Errorf("n1's view: digest %x with %d entries, want %x with %d", got.ViewDigest, len(got.Entries), want.ViewDigest, 1+services)
	}
	if diff := cmp.Diff(keysOf(want.Entries), keysOf(got.Entries)); diff != "" {
		t.Errorf("n1's keys (-one by one +loaded):\n%s", diff)
	}
}

func keysOf(entries []*wire.Entry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Key)
	}
	return out
}
