package watch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/testlog"
)

func newFreshness(t *testing.T) (*Freshness, *clocktesting.FakePassiveClock, *testlog.Buffer) {
	t.Helper()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	logs := &testlog.Buffer{}
	return NewFreshness(clk, hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})), clk, logs
}

// The marker is the highest resourceVersion seen per resource, and the
// highest of a change (bookmarks are not); a list sets both (lower only
// when the API server's data went back, which is logged); a
// resourceVersion that is not a number leaves the resource without a
// marker, logged once; an empty one says nothing.
func TestFreshnessMarker(t *testing.T) {
	f, _, logs := newFreshness(t)
	f.Listed(ResourceServices, "100")
	f.Seen(ResourceServices, "120", "ADDED")
	f.Seen(ResourceServices, "110", "BOOKMARK") // older than seen: no change
	f.Seen(ResourceServices, "130", "BOOKMARK")
	f.Listed(ResourceNodes, "")
	f.Seen(ResourceNodes, "90", "BOOKMARK")
	f.Seen(ResourceNodes, "85", "DELETED")
	f.Seen(ResourceEndpointSlices, "abc", "ADDED")
	f.Seen(ResourceEndpointSlices, "def", "MODIFIED")
	f.Seen(ResourceEndpointSlices, "500", "MODIFIED")
	want := map[string]wire.Versions{ResourceServices: {Seen: 130, Changed: 120}, ResourceNodes: {Seen: 90, Changed: 85}}
	if diff := cmp.Diff(want, f.Marker()); diff != "" {
		t.Errorf("marker (-want +got):\n%s", diff)
	}
	if n := strings.Count(logs.String(), "resourceVersion is not a number"); n != 1 {
		t.Errorf("opaque resourceVersion logged %d times, want once:\n%s", n, logs)
	}
	if strings.Contains(logs.String(), "went back") {
		t.Errorf("logged a step back:\n%s", logs)
	}

	f.Listed(ResourceServices, "80") // etcd restored from a backup
	if got := f.Marker()[ResourceServices]; got != (wire.Versions{Seen: 80, Changed: 80}) {
		t.Errorf("marker after a list at 80: %+v, want 80, 80", got)
	}
	if !strings.Contains(logs.String(), "resourceVersion went back in a list") {
		t.Errorf("the step back was not logged:\n%s", logs)
	}
}

// Check names each resource not heard from for longer than the bound and
// for how long; any event or bookmark makes it fresh again.
func TestFreshnessCheck(t *testing.T) {
	f, clk, _ := newFreshness(t)
	f.track(ResourceServices)
	f.track(ResourceNodes)
	if err := f.Check(time.Minute); err != nil {
		t.Errorf("Check right after start: %v", err)
	}
	clk.SetTime(clk.Now().Add(50 * time.Second))
	f.Seen(ResourceNodes, "10", "BOOKMARK")
	clk.SetTime(clk.Now().Add(20 * time.Second))
	err := f.Check(time.Minute)
	var stale *StaleError
	if !errors.As(err, &stale) {
		t.Fatalf("Check after 70s without a Service event = %v, want a *StaleError", err)
	}
	if diff := cmp.Diff(map[string]time.Duration{ResourceServices: 70 * time.Second}, stale.Silent); diff != "" {
		t.Errorf("stale resources (-want +got):\n%s", diff)
	}
	if want := "services: no event or bookmark for 1m10s"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if err := f.Check(0); err != nil {
		t.Errorf("Check with no bound = %v", err)
	}
	f.Seen(ResourceServices, "11", "BOOKMARK")
	if err := f.Check(time.Minute); err != nil {
		t.Errorf("Check after a bookmark: %v", err)
	}
}

// tracked passes lists, events and bookmarks through unchanged and reports
// their resourceVersions, the end of a streaming list as a list; it keeps
// whether the ListerWatcher supports WatchList semantics.
func TestTrackedListWatch(t *testing.T) {
	f, clk, _ := newFreshness(t)
	fw := apiwatch.NewFake()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
			return &corev1.ServiceList{ListMeta: metav1.ListMeta{ResourceVersion: "50"}}, nil
		},
		WatchFuncWithContext: func(context.Context, metav1.ListOptions) (apiwatch.Interface, error) { return fw, nil },
	}
	client := fake.NewClientset()
	wrapped := tracked(cache.ToListWatcherWithWatchListSemantics(lw, client), ResourceServices, f)
	if _, ok := wrapped.(interface{ IsWatchListSemanticsUnSupported() bool }); !ok {
		t.Errorf("the wrapper hides whether WatchList is supported")
	}
	lwc := cache.ToListerWatcherWithContext(wrapped)
	if _, err := lwc.ListWithContext(context.Background(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := f.Marker()[ResourceServices]; got != (wire.Versions{Seen: 50, Changed: 50}) {
		t.Errorf("marker after the list: %+v, want 50, 50", got)
	}
	clk.SetTime(clk.Now().Add(time.Hour))
	w, err := lwc.WatchWithContext(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if d := f.Silence()[ResourceServices]; d != 0 {
		t.Errorf("silent for %s after a watch started, want 0: an accepted watch is hearing from the API server", d)
	}
	svc := func(rv string, annotations map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", ResourceVersion: rv, Annotations: annotations}}
	}
	for _, tt := range []struct {
		event apiwatch.Event
		want  wire.Versions
	}{
		{apiwatch.Event{Type: apiwatch.Added, Object: svc("60", nil)}, wire.Versions{Seen: 60, Changed: 60}},
		{apiwatch.Event{Type: apiwatch.Bookmark, Object: svc("75", nil)}, wire.Versions{Seen: 75, Changed: 60}},
		{apiwatch.Event{Type: apiwatch.Error, Object: &metav1.Status{Message: "too old"}}, wire.Versions{Seen: 75, Changed: 60}},
		{apiwatch.Event{Type: apiwatch.Bookmark, Object: svc("70", map[string]string{metav1.InitialEventsAnnotationKey: "true"})}, wire.Versions{Seen: 70, Changed: 70}},
		{apiwatch.Event{Type: apiwatch.Deleted, Object: svc("90", nil)}, wire.Versions{Seen: 90, Changed: 90}},
	} {
		go fw.Action(tt.event.Type, tt.event.Object)
		select {
		case got := <-w.ResultChan():
			if diff := cmp.Diff(tt.event, got); diff != "" {
				t.Errorf("event passed on (-want +got):\n%s", diff)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s event not passed on", tt.event.Type)
		}
		if got := f.Marker()[ResourceServices]; got != tt.want {
			t.Errorf("marker after %s: %+v, want %+v", tt.event.Type, got, tt.want)
		}
	}
}

// Start feeds the tracker: once synced every watched resource counts as
// heard from, and a change raises its resource's marker.
func TestStartTracksFreshness(t *testing.T) {
	client := fake.NewClientset(objects()...)
	serveServiceCIDRs(client, "get", "list", "watch")
	f, _, _ := newFreshness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Start(ctx, client, &recorder{}, f, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{ResourceEndpointSlices, ResourceNodes, ResourceServiceCIDRs, ResourceServices}, sortedKeys(f.Silence())); diff != "" {
		t.Errorf("tracked resources (-want +got):\n%s", diff)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "new", ResourceVersion: "4242"}}
	if _, err := client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Marker()[ResourceServices].Changed != 4242 {
		if time.Now().After(deadline) {
			t.Fatalf("marker %v, want services=4242", f.Marker())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
