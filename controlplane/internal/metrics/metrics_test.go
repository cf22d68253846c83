package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/stats"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

type fakeSource struct {
	version uint64
	nodes   []differ.Status
}

func (f *fakeSource) Nodes() (uint64, []differ.Status) { return f.version, f.nodes }
func (f *fakeSource) AddressConflicts() int            { return 0 }

// recorder is the sink the decorator wraps.
type recorder struct{ calls []string }

func (r *recorder) SetCompactService(s *compact.Service) {
	r.calls = append(r.calls, "set service "+s.Name)
}
func (r *recorder) DeleteService(ns, name string) { r.calls = append(r.calls, "delete service "+name) }
func (r *recorder) SetCompactSlice(s *compact.Slice) {
	r.calls = append(r.calls, "set slice "+s.Name)
}
func (r *recorder) DeleteSlice(ns, name string) { r.calls = append(r.calls, "delete slice "+name) }
func (r *recorder) SetNode(n *corev1.Node)      { r.calls = append(r.calls, "set node "+n.Name) }
func (r *recorder) DeleteNode(name string)      { r.calls = append(r.calls, "delete node "+name) }
func (r *recorder) SetServiceCIDR(c *networkingv1.ServiceCIDR) {
	r.calls = append(r.calls, "set servicecidr "+c.Name)
}
func (r *recorder) DeleteServiceCIDR(name string) {
	r.calls = append(r.calls, "delete servicecidr "+name)
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNodeSeries(t *testing.T) {
	src := &fakeSource{version: 107, nodes: []differ.Status{
		{Node: "a", Connected: true, Desired: 107, Acked: 107, Entries: 3},
		{Node: "b", Connected: true, Desired: 107, Acked: 100, Entries: 3},
		{Node: "c", Connected: false, Desired: 90, Acked: 0},
	}}
	m, err := New(src)
	if err != nil {
		t.Fatal(err)
	}
	got := scrape(t, m)
	for _, want := range []string{
		"doorman_controlplane_version 107",
		"doorman_controlplane_connected_nodes 2",
		`doorman_controlplane_node_acked_version{node="a"} 107`,
		`doorman_controlplane_node_acked_version{node="b"} 100`,
		`doorman_controlplane_node_lag_versions{node="a"} 0`,
		`doorman_controlplane_node_lag_versions{node="b"} 7`,
		`doorman_controlplane_node_lag_versions{node="c"} 0`,
		`doorman_controlplane_node_entries{node="b"} 3`,
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(got, want+"\n") && !strings.Contains(got, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	src.nodes[1].Acked = 107
	if got := scrape(t, m); !strings.Contains(got, `doorman_controlplane_node_lag_versions{node="b"} 0`) {
		t.Error("lag of b did not follow its ack")
	}
}

// TestAddressConflictsGauge: the gauge counts, at each scrape, the
// addresses Services are sent without because another Service owns them.
func TestAddressConflictsGauge(t *testing.T) {
	h := hub.New(hub.Config{VersionSeed: 1})
	m, err := New(h)
	if err != nil {
		t.Fatal(err)
	}
	service := func(name string, created int64) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), CreationTimestamp: metav1.Unix(created, 0)},
			Spec: corev1.ServiceSpec{
				ClusterIPs:  []string{fmt.Sprintf("10.96.0.%d", created)},
				Ports:       []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}, {Protocol: corev1.ProtocolUDP, Port: 53}},
				ExternalIPs: []string{"192.0.2.1"},
			},
		}
	}
	gauge := func() string {
		for _, l := range strings.Split(scrape(t, m), "\n") {
			if strings.HasPrefix(l, "doorman_service_address_conflicts ") {
				return l
			}
		}
		return "missing"
	}
	if got := gauge(); got != "doorman_service_address_conflicts 0" {
		t.Errorf("no Services: %q", got)
	}
	h.SetService(service("old", 1))
	h.SetService(service("new", 2))
	if got := gauge(); got != "doorman_service_address_conflicts 2" {
		t.Errorf("two ports of ns/new lose 192.0.2.1: %q", got)
	}
	h.DeleteService("ns", "old")
	if got := gauge(); got != "doorman_service_address_conflicts 0" {
		t.Errorf("owner deleted: %q", got)
	}
}

func TestStatsHandler(t *testing.T) {
	m, err := New(&fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	h := m.StatsHandler()
	sync := h.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: SyncMethod})
	other := h.TagRPC(context.Background(), &stats.RPCTagInfo{FullMethodName: "/doorman.v1.InspectService/ListNodes"})
	ack := &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: 1}}}
	nack := &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: 2, Error: "boom"}}}
	for _, ev := range []struct {
		ctx context.Context
		s   stats.RPCStats
	}{
		{sync, &stats.Begin{}},
		{sync, &stats.OutPayload{WireLength: 100}},
		{sync, &stats.OutPayload{WireLength: 50}},
		{sync, &stats.InPayload{WireLength: 10, Payload: ack}},
		{sync, &stats.InPayload{WireLength: 12, Payload: nack}},
		{other, &stats.OutPayload{WireLength: 1000}},
		{other, &stats.InPayload{WireLength: 7, Payload: nack}},
	} {
		h.HandleRPC(ev.ctx, ev.s)
	}
	got := map[string]float64{
		"streams":  counter(t, m.streams),
		"bytes":    counter(t, m.bytesSent),
		"messages": counter(t, m.messagesSent),
		"received": counter(t, m.bytesRecv),
		"acks":     counter(t, m.acks),
		"nacks":    counter(t, m.nacks),
	}
	want := map[string]float64{"streams": 1, "bytes": 150, "messages": 2, "received": 22, "acks": 1, "nacks": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestSink(t *testing.T) {
	m, err := New(&fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s := m.Sink(rec)
	s.SetCompactService(&compact.Service{Identity: compact.Identity{Name: "web"}})
	s.SetCompactService(&compact.Service{Identity: compact.Identity{Name: "web"}})
	s.DeleteService("ns", "web")
	s.SetCompactSlice(&compact.Slice{Identity: compact.Identity{Name: "web-1"}})
	s.DeleteSlice("ns", "web-1")
	s.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	s.DeleteNode("n1")
	s.SetServiceCIDR(&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}})
	s.DeleteServiceCIDR("kubernetes")
	wantCalls := []string{"set service web", "set service web", "delete service web", "set slice web-1", "delete slice web-1", "set node n1", "delete node n1",
		"set servicecidr kubernetes", "delete servicecidr kubernetes"}
	if diff := cmp.Diff(wantCalls, rec.calls); diff != "" {
		t.Errorf("calls passed on (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		kind, op string
		want     float64
	}{
		{"service", "set", 2}, {"service", "delete", 1}, {"endpointslice", "set", 1},
		{"endpointslice", "delete", 1}, {"node", "set", 1}, {"node", "delete", 1},
		{"servicecidr", "set", 1}, {"servicecidr", "delete", 1},
	} {
		t.Run(tt.kind+"/"+tt.op, func(t *testing.T) {
			if got := counter(t, m.events.WithLabelValues(tt.kind, tt.op)); got != tt.want {
				t.Errorf("events = %v, want %v", got, tt.want)
			}
		})
	}
	if got := scrape(t, m); !strings.Contains(got, "doorman_controlplane_model_recompute_duration_seconds_count 9") {
		t.Errorf("recompute histogram count is not 9:\n%s", grep(got, "recompute"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// counter reads a counter's value.
func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// histogram reads a histogram's sample count and sum.
func histogram(t *testing.T, h prometheus.Histogram) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// The trigger-time delays count each annotated slice event and each
// incremental update once, from the trigger time; times from before the
// control plane started, full views and values without a trigger are not
// measured.
func TestTriggerDelays(t *testing.T) {
	m, err := New(&fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	m.start = time.Now().Add(-time.Minute)
	s := m.Sink(&recorder{})
	slice := func(name string, trigger time.Time) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if !trigger.IsZero() {
			es.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: trigger.Format(time.RFC3339Nano)}
		}
		return es
	}
	recent := time.Now().Add(-50 * time.Millisecond)
	s.SetCompactSlice(compact.FromSlice(slice("annotated", recent)))
	s.SetCompactSlice(compact.FromSlice(slice("plain", time.Time{})))
	s.SetCompactSlice(compact.FromSlice(slice("before start", m.start.Add(-time.Hour))))
	s.SetCompactSlice(compact.FromSlice(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "garbage",
		Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: "yesterday"}}}))
	if n, sum := histogram(t, m.sliceDelay); n != 1 || sum < 0.05 || sum > 60 {
		t.Errorf("slice delay: %d samples summing %vs, want 1 of at least 0.05s", n, sum)
	}

	entry := func(trigger int64) *wire.Entry { return &wire.Entry{Key: "k", Trigger: trigger} }
	m.Sent(&wire.Update{Upserts: []*wire.Entry{entry(0), entry(recent.UnixNano()), entry(recent.Add(-time.Second).UnixNano())}})
	m.Sent(&wire.Update{Full: true, Upserts: []*wire.Entry{entry(recent.UnixNano())}})
	m.Sent(&wire.Update{Upserts: []*wire.Entry{entry(0)}})
	m.Sent(&wire.Update{Removals: []string{"k"}})
	if n, sum := histogram(t, m.sendDelay); n != 1 || sum < 0.05 || sum > 60 {
		t.Errorf("send delay: %d samples summing %vs, want 1 of at least 0.05s (the newest trigger)", n, sum)
	}
}
