package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape serves /metrics from g and parses the text: one value per counter
// or gauge series whose name starts with prefix, keyed name{label="value",…}.
func scrape(t *testing.T, g prometheus.Gatherer, prefix string) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler(g).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// codes answers each path with the code set for it.
type codes map[string]int

func (c codes) ServeHTTP(w http.ResponseWriter, r *http.Request) { w.WriteHeader(c[r.URL.Path]) }

func TestHealthCountsByCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	answers := codes{"/healthz": http.StatusOK, "/livez": http.StatusOK, "/other": http.StatusOK}
	h, err := Health(reg, answers)
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string, want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("GET %s = %d, want %d (the wrapped handler's)", path, rec.Code, want)
		}
	}
	get("/healthz", http.StatusOK)
	get("/healthz", http.StatusOK)
	get("/livez", http.StatusOK)
	get("/other", http.StatusOK) // served, not counted
	answers["/healthz"] = http.StatusServiceUnavailable
	get("/healthz", http.StatusServiceUnavailable)

	want := map[string]float64{
		`kubeproxy_proxy_healthz_total{code="200"}`: 2,
		`kubeproxy_proxy_healthz_total{code="503"}`: 1,
		`kubeproxy_proxy_livez_total{code="200"}`:   1,
	}
	if diff := cmp.Diff(want, scrape(t, reg, "kubeproxy_proxy_")); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
	if _, err := Health(reg, answers); err == nil {
		t.Error("registering the health series twice did not fail")
	}
}
