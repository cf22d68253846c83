package metrics

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/stats"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// stepKernel takes 3 ms of the test clock per call.
type stepKernel struct {
	clock *time.Time
	ops   int
	err   error
	steps dataplane.SyncSteps // what each Sync reports
}

func (k *stepKernel) Sync(map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	*k.clock = k.clock.Add(3 * time.Millisecond)
	return dataplane.Stats{Ops: k.ops, Steps: k.steps}, k.err
}

func (k *stepKernel) RetireUnused() (int, error) { return 0, nil }

func (k *stepKernel) Apply([]dataplane.Change) (dataplane.Stats, error) {
	*k.clock = k.clock.Add(3 * time.Millisecond)
	return dataplane.Stats{Ops: k.ops}, k.err
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) *dto.Histogram {
	t.Helper()
	return firstMetric(t, reg, name).GetHistogram()
}

// value is a counter's or gauge's value.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	m := firstMetric(t, reg, name)
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// firstMetric is the first series of the family name.
func firstMetric(t *testing.T, reg *prometheus.Registry, name string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0]
		}
	}
	t.Fatalf("no %s", name)
	return nil
}

// newMetrics registers the agent's series with a fresh registry.
func newMetrics(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, m
}

func TestTransactionsAndProgrammingLatency(t *testing.T) {
	clock := time.Unix(1000, 0)
	reg, m := newMetrics(t)
	m.now = func() time.Time { return clock }
	m.start = clock.Add(-time.Second)
	k := &stepKernel{clock: &clock, ops: 4}
	wrapped := m.Kernel(k)

	if _, err := wrapped.Apply(nil); err != nil {
		t.Fatal(err)
	}
	commit := clock
	m.Updated(agent.Outcome{Received: commit.Add(-200 * time.Millisecond), TriggerTimes: []int64{
		commit.Add(-250 * time.Millisecond).UnixNano(), // measured: 0.25 s, of which 0.05 s before it was received
		time.Unix(998, 0).UnixNano(),                   // before the agent started: not measured
	}})
	k.err, k.ops = errors.New("EPERM"), 0
	if _, err := wrapped.Sync(nil); err == nil {
		t.Fatal("want the injected error")
	}

	if got := histogram(t, reg, "kubeproxy_sync_proxy_rules_duration_seconds"); got.GetSampleCount() != 2 || got.GetSampleSum() != 0.006 {
		t.Errorf("sync duration: count %d sum %v, want 2 transactions of 3 ms", got.GetSampleCount(), got.GetSampleSum())
	}
	if got := histogram(t, reg, "doorman_agent_kernel_transaction_ops"); got.GetSampleCount() != 1 || got.GetSampleSum() != 4 {
		t.Errorf("ops: count %d sum %v, want the committed transaction's 4", got.GetSampleCount(), got.GetSampleSum())
	}
	if got := histogram(t, reg, "kubeproxy_network_programming_duration_seconds"); got.GetSampleCount() != 1 || got.GetSampleSum() != 0.25 {
		t.Errorf("programming latency: count %d sum %v, want one of 0.25 s", got.GetSampleCount(), got.GetSampleSum())
	}
	if got := histogram(t, reg, "doorman_agent_update_receive_delay_seconds"); got.GetSampleCount() != 1 || math.Abs(got.GetSampleSum()-0.05) > 1e-9 {
		t.Errorf("receive delay: count %d sum %v, want one of 0.05 s", got.GetSampleCount(), got.GetSampleSum())
	}
	if got, want := value(t, reg, "kubeproxy_sync_proxy_rules_last_timestamp_seconds"), float64(commit.UnixNano())/1e9; got != want {
		t.Errorf("last sync timestamp %v, want the commit's %v (a failed transaction does not move it)", got, want)
	}
}

// A committed Sync's steps land in one series each; a failed Sync adds
// nothing, an Apply (no steps) neither.
func TestSyncSteps(t *testing.T) {
	clock := time.Unix(1000, 0)
	reg, m := newMetrics(t)
	k := &stepKernel{clock: &clock, steps: dataplane.SyncSteps{
		Render: 400 * time.Millisecond, Read: 20 * time.Millisecond, Plan: 100 * time.Millisecond,
		Encode: 300 * time.Millisecond, Commit: 1500 * time.Millisecond,
	}}
	wrapped := m.Kernel(k)
	if _, err := wrapped.Sync(nil); err != nil {
		t.Fatal(err)
	}
	partial := &dataplane.InvalidEntriesError{Entries: map[string]error{"a": errors.New("bad")}}
	k.err = partial
	if _, err := wrapped.Sync(nil); !errors.Is(err, partial) {
		t.Fatalf("want the partial error, got %v", err)
	}
	k.err = errors.New("EPERM")
	if _, err := wrapped.Sync(nil); err == nil {
		t.Fatal("want the injected error")
	}
	if _, err := wrapped.Apply(nil); err == nil {
		t.Fatal("want the injected error")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]float64{}
	for _, f := range families {
		if f.GetName() != "doorman_agent_sync_step_duration_seconds" {
			continue
		}
		for _, s := range f.GetMetric() {
			h := s.GetHistogram()
			got[s.GetLabel()[0].GetValue()] = [2]float64{float64(h.GetSampleCount()), math.Round(h.GetSampleSum()*1e6) / 1e6}
		}
	}
	want := map[string][2]float64{"render": {2, 0.8}, "read": {2, 0.04}, "plan": {2, 0.2}, "encode": {2, 0.6}, "commit": {2, 3}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sync steps (count, sum) by step (-want +got):\n%s", diff)
	}
}

func TestProxyMode(t *testing.T) {
	h := Handler(prometheus.NewRegistry())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/proxyMode", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "nftables" {
		t.Errorf("GET /proxyMode = %d %q, want 200 \"nftables\"", rec.Code, rec.Body.String())
	}
}

type counters agent.Counters

func (c counters) Counters() agent.Counters { return agent.Counters(c) }

func TestWatch(t *testing.T) {
	reg, m := newMetrics(t)
	m.ConntrackCleanFailed()
	m.HealthCheckFailed()
	m.HealthCheckFailed()
	if err := m.Watch(reg, counters{Version: 9, Acks: 3, Nacks: 1, LastNackVersion: 8, FullSyncs: 2, DriftRepairs: 1, Connected: true, KernelReady: true, NotProgrammed: 2, Rejections: 5}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		m := f.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[f.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			got[f.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{
		"doorman_agent_version": 9, "doorman_agent_acks_total": 3, "doorman_agent_nacks_total": 1,
		"doorman_agent_last_nack_version": 8, "doorman_agent_full_syncs_total": 2, "doorman_agent_drift_repairs_total": 1,
		"doorman_agent_connected": 1, "doorman_agent_kernel_ready": 1,
		"doorman_agent_not_programmed_entries": 2, "doorman_agent_kernel_rejections_total": 5,
		"doorman_agent_cache_load_seconds": 0, "doorman_agent_stream_bytes_received_total": 0,
		"doorman_agent_conntrack_clean_errors_total": 1, "doorman_agent_health_check_errors_total": 2,
		"kubeproxy_sync_proxy_rules_last_timestamp_seconds": 0,
		"doorman_build_info": 1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

func TestStreamBytes(t *testing.T) {
	reg, m := newMetrics(t)
	h := m.StatsHandler()
	ctx := context.Background()
	for _, s := range []stats.RPCStats{
		&stats.InPayload{Client: true, WireLength: 120},
		&stats.InPayload{Client: false, WireLength: 1000}, // a server's: not the stream's
		&stats.OutPayload{Client: true, WireLength: 50},   // sent, not received
		&stats.InPayload{Client: true, WireLength: 30},
	} {
		h.HandleRPC(ctx, s)
	}
	if got := value(t, reg, "doorman_agent_stream_bytes_received_total"); got != 150 {
		t.Errorf("bytes received %v, want 150", got)
	}
}
