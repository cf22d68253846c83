package watch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	"github.com/doorman-proxy/doorman/internal/testlog"
)

// recorder is a Sink that notes what it is told.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) SetCompactService(s *compact.Service) { r.note("set service " + s.Name) }
func (r *recorder) DeleteService(_, name string)         { r.note("delete service " + name) }
func (r *recorder) SetCompactSlice(s *compact.Slice)     { r.note("set slice " + s.Name) }
func (r *recorder) DeleteSlice(_, name string)           { r.note("delete slice " + name) }
func (r *recorder) SetNode(n *corev1.Node)               { r.note("set node " + n.Name) }
func (r *recorder) DeleteNode(name string)               { r.note("delete node " + name) }
func (r *recorder) SetServiceCIDR(c *networkingv1.ServiceCIDR) {
	r.note("set servicecidr " + c.Name + " " + strings.Join(c.Spec.CIDRs, ","))
}
func (r *recorder) DeleteServiceCIDR(name string) { r.note("delete servicecidr " + name) }

func objects() []runtime.Object {
	return []runtime.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}},
		&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"},
			Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/12", "fd00:10:96::/108"}}},
	}
}

// serveServiceCIDRs makes the fake API server list networking.k8s.io/v1
// servicecidrs in discovery, with the given verbs.
func serveServiceCIDRs(client *fake.Clientset, verbs ...string) {
	client.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{
		GroupVersion: "networking.k8s.io/v1",
		APIResources: []metav1.APIResource{
			{Name: "ingresses", Namespaced: true, Kind: "Ingress", Verbs: []string{"get", "list", "watch"}},
			{Name: "servicecidrs", Kind: "ServiceCIDR", Verbs: verbs},
		},
	}}
}

func start(t *testing.T, client *fake.Clientset) (*recorder, *testlog.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rec, logs := &recorder{}, &testlog.Buffer{}
	log := hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	if err := Start(ctx, client, rec, nil, log); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return rec, logs
}

// TestServiceCIDRsWatched: where the API server serves ServiceCIDRs,
// their initial list reaches the sink before Start returns, and later
// changes follow.
func TestServiceCIDRsWatched(t *testing.T) {
	client := fake.NewClientset(objects()...)
	serveServiceCIDRs(client, "get", "list", "watch", "create", "delete")
	rec, logs := start(t, client)
	if got := rec.got(); !slices.Contains(got, "set servicecidr kubernetes 10.96.0.0/12,fd00:10:96::/108") {
		t.Errorf("sink after Start: %v, want the ServiceCIDR among them", got)
	}
	if strings.Contains(logs.String(), "not served") {
		t.Errorf("logged that ServiceCIDRs are not served:\n%s", logs)
	}
	ctx := context.Background()
	extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.200.0.0/24"}}}
	if _, err := client.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.NetworkingV1().ServiceCIDRs().Delete(ctx, "extra", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"set servicecidr extra 10.200.0.0/24", "delete servicecidr extra"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for _, c := range rec.got() {
			if strings.Contains(c, "extra") {
				got = append(got, c)
			}
		}
		diff := cmp.Diff(want, got)
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ServiceCIDR events (-want +got):\n%s", diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServiceCIDRsNotServed: on an API server without networking.k8s.io/v1
// servicecidrs (older than 1.33, or one that serves the group without them,
// or without list and watch), the other kinds are watched as ever, the sink
// hears of no ServiceCIDR, and one Info line says so.
func TestServiceCIDRsNotServed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(*fake.Clientset)
	}{
		{"group version not served", func(*fake.Clientset) {}},
		{"group version without servicecidrs", func(c *fake.Clientset) {
			c.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{GroupVersion: "networking.k8s.io/v1",
				APIResources: []metav1.APIResource{{Name: "ingresses", Namespaced: true, Kind: "Ingress", Verbs: []string{"get", "list", "watch"}}}}}
		}},
		{"servicecidrs without watch", func(c *fake.Clientset) { serveServiceCIDRs(c, "get", "list") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(objects()...)
			tc.serve(client)
			rec, logs := start(t, client)
			got := rec.got()
			for _, c := range got {
				if strings.Contains(c, "servicecidr") {
					t.Errorf("sink told %q", c)
				}
			}
			if !slices.Contains(got, "set node n1") || !slices.Contains(got, "set service web") {
				t.Errorf("sink after Start: %v, want the node and the Service", got)
			}
			if n := strings.Count(logs.String(), "[INFO]  servicecidrs not served: unallocated service IPs will not be dropped"); n != 1 {
				t.Errorf("logged %d times that ServiceCIDRs are not served, want once:\n%s", n, logs)
			}
		})
	}
}

// TestServiceCIDRDiscoveryRetried: a discovery failure other than "not
// served" is retried, not taken for an answer.
func TestServiceCIDRDiscoveryRetried(t *testing.T) {
	client := fake.NewClientset(objects()...)
	serveServiceCIDRs(client, "get", "list", "watch")
	var failures atomic.Int32
	client.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures.Add(1) == 1 {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	rec, logs := start(t, client)
	if !slices.Contains(rec.got(), "set servicecidr kubernetes 10.96.0.0/12,fd00:10:96::/108") {
		t.Errorf("sink after Start: %v, want the ServiceCIDR among them", rec.got())
	}
	if !strings.Contains(logs.String(), "discovery failed, retrying") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
}

// TestServiceCIDRDiscoveryGivesUpWithContext: Start returns once ctx is
// done while discovery keeps failing.
func TestServiceCIDRDiscoveryGivesUpWithContext(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := Start(ctx, client, &recorder{}, nil, hclog.NewNullLogger())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want the context's error", err)
	}
}

// An update whose resourceVersion did not change (a relist redelivering
// what the handler has) is not passed on; any other update is.
func TestHandlerSkipsSameVersion(t *testing.T) {
	var got []string
	h := handler(hclog.NewNullLogger(), "endpointslice",
		func(s *compact.Slice) { got = append(got, s.Name+"@"+s.ResourceVersion) },
		func(*compact.Slice) {})
	slice := func(rv string) *compact.Slice {
		return &compact.Slice{Identity: compact.Identity{Name: "web", ResourceVersion: rv}}
	}
	h.OnUpdate(slice("5"), slice("5"))
	h.OnUpdate(slice("5"), slice("6"))
	h.OnUpdate(slice(""), slice(""))
	h.OnUpdate(nil, slice("7"))
	if diff := cmp.Diff([]string{"web@6", "web@", "web@7"}, got); diff != "" {
		t.Errorf("updates passed on (-want +got):\n%s", diff)
	}
}

// A delete the informer missed (a tombstone) reaches the sink as a delete
// of the object it holds.
func TestHandlerUnwrapsTombstones(t *testing.T) {
	var got []string
	h := handler(hclog.NewNullLogger(), "service",
		func(s *compact.Service) { got = append(got, "set "+s.Name) },
		func(s *compact.Service) { got = append(got, "delete "+s.Namespace+"/"+s.Name) })
	svc := &compact.Service{Identity: compact.Identity{Namespace: "ns", Name: "web", ResourceVersion: "5"}}
	h.OnDelete(svc)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/web", Obj: svc})
	if diff := cmp.Diff([]string{"delete ns/web", "delete ns/web"}, got); diff != "" {
		t.Errorf("deletes passed on (-want +got):\n%s", diff)
	}
}

// TestServicesAndSlicesCompact: the sink hears of Services and
// EndpointSlices in their compact forms, adds, updates and deletes.
func TestServicesAndSlicesCompact(t *testing.T) {
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web"}}, AddressType: discoveryv1.AddressTypeIPv4}
	client := fake.NewClientset(append(objects(), slice)...)
	rec, _ := start(t, client)
	ctx := context.Background()
	if err := client.DiscoveryV1().EndpointSlices("ns").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Services("ns").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"set service web", "set slice web-1", "delete slice web-1", "delete service web"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for _, c := range rec.got() {
			if strings.Contains(c, "service") && !strings.Contains(c, "servicecidr") || strings.Contains(c, "slice") {
				got = append(got, c)
			}
		}
		// The two informers deliver in parallel: only each kind's order
		// is fixed.
		diff := cmp.Diff(want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b }))
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Service and EndpointSlice events (-want +got):\n%s", diff)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
