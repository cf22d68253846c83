package app

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// scrape reads /metrics into one value per series: a counter's or gauge's
// value, a histogram's sample count.
func (r *agentRun) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(r.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if len(f.GetMetric()) != 1 {
			continue
		}
		m := f.GetMetric()[0]
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			out[name] = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			out[name] = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			out[name] = float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out
}

// TestMetrics scrapes /metrics of a running agent: every series is there
// after the first update, and moves as the next update is applied.
func TestMetrics(t *testing.T) {
	_, run, cp := programmedAgent(t)
	before := run.scrape(t)
	view := changedView(t, "10.244.3.2", time.Now().UnixNano())
	cp.updates <- &doormanv1.SyncResponse{Version: 2, Upserts: view[:1], ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 2 {
		t.Fatalf("reply %v, want an ack of version 2", r)
	}
	after := run.scrape(t)

	same := func(b, a float64) bool { return a == b }
	grew := func(b, a float64) bool { return a > b }
	is := func(b0, a0 float64) func(b, a float64) bool {
		return func(b, a float64) bool { return b == b0 && a == a0 }
	}
	for _, tc := range []struct {
		series string
		want   func(before, after float64) bool
		what   string
	}{
		{"kubeproxy_sync_proxy_rules_duration_seconds", is(1, 2), "one transaction per update"},
		{"kubeproxy_network_programming_duration_seconds", is(0, 1), "one changed ServicePort with a trigger time"},
		{"kubeproxy_sync_proxy_rules_last_timestamp_seconds", grew, "moves with each commit"},
		{"doorman_agent_version", is(1, 2), "the applied version"},
		{"doorman_agent_acks_total", is(1, 2), "one ack per update"},
		{"doorman_agent_nacks_total", is(0, 0), "no nack"},
		{"doorman_agent_full_syncs_total", is(1, 1), "the first update only"},
		{"doorman_agent_drift_repairs_total", is(0, 0), "no drift"},
		{"doorman_agent_stream_bytes_received_total", grew, "the update's bytes"},
		{"doorman_agent_kernel_transaction_ops", is(1, 2), "one per committed transaction"},
		{"doorman_agent_connected", is(1, 1), "connected"},
		{"doorman_agent_cache_load_seconds", same, "no cache in this run"},
		{"process_resident_memory_bytes", func(b, a float64) bool { return b > 0 && a > 0 }, "process collector"},
	} {
		t.Run(tc.series, func(t *testing.T) {
			b, okB := before[tc.series]
			a, okA := after[tc.series]
			if !okB || !okA {
				t.Fatalf("series missing (before %v, after %v)", okB, okA)
			}
			if !tc.want(b, a) {
				t.Errorf("%s: before %v, after %v (%s)", tc.series, b, a, tc.what)
			}
		})
	}
	if b := before["doorman_agent_stream_bytes_received_total"]; b <= 0 {
		t.Errorf("stream bytes before the second update = %v, want the first update's", b)
	}
}
