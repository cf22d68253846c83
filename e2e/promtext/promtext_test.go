package promtext

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSums(t *testing.T) {
	text := `# HELP doorman_agent_nacks_total NACKs sent.
# TYPE doorman_agent_nacks_total counter
doorman_agent_nacks_total 3
# HELP kubeproxy_proxy_healthz_total Answers of /healthz.
# TYPE kubeproxy_proxy_healthz_total counter
kubeproxy_proxy_healthz_total{code="200"} 7
kubeproxy_proxy_healthz_total{code="503"} 2
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.5e+06
# TYPE some_untyped untyped
some_untyped 4
# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram
kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="+Inf"} 1
kubeproxy_sync_proxy_rules_duration_seconds_sum 0.1
kubeproxy_sync_proxy_rules_duration_seconds_count 1
`
	got, err := Sums(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"doorman_agent_nacks_total":                         3,
		"kubeproxy_proxy_healthz_total":                     9,
		"go_memstats_heap_inuse_bytes":                      1.5e6,
		"some_untyped":                                      4,
		"kubeproxy_sync_proxy_rules_duration_seconds_count": 1,
		"kubeproxy_sync_proxy_rules_duration_seconds_sum":   0.1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Sums (-want +got):\n%s", diff)
	}
	if _, err := Sums(strings.NewReader("not { metrics")); err == nil {
		t.Error("Sums of garbage: no error")
	}
}

func TestHistogramsBy(t *testing.T) {
	text := `# TYPE doorman_agent_sync_step_duration_seconds histogram
doorman_agent_sync_step_duration_seconds_bucket{step="render",le="+Inf"} 2
doorman_agent_sync_step_duration_seconds_sum{step="render"} 0.5
doorman_agent_sync_step_duration_seconds_count{step="render"} 2
doorman_agent_sync_step_duration_seconds_bucket{step="commit",le="+Inf"} 1
doorman_agent_sync_step_duration_seconds_sum{step="commit"} 1.75
doorman_agent_sync_step_duration_seconds_count{step="commit"} 1
# TYPE doorman_agent_nacks_total counter
doorman_agent_nacks_total 3
`
	got, err := HistogramsBy(strings.NewReader(text), "doorman_agent_sync_step_duration_seconds", "step")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Histogram{"render": {Count: 2, Sum: 0.5}, "commit": {Count: 1, Sum: 1.75}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("HistogramsBy (-want +got):\n%s", diff)
	}
	if _, err := HistogramsBy(strings.NewReader(text), "doorman_agent_nacks_total", "step"); err == nil {
		t.Error("a counter: no error")
	}
	got, err = HistogramsBy(strings.NewReader(text), "absent", "step")
	if err != nil || len(got) != 0 {
		t.Errorf("an absent family: %v, %v; want no series and no error", got, err)
	}
	if _, err := HistogramsBy(strings.NewReader("not { metrics"), "absent", "step"); err == nil {
		t.Error("malformed text: no error")
	}
}
