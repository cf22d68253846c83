// Package promtext reads what a /metrics endpoint serves (Prometheus text
// format) with Prometheus' own parser, for the e2e tests and benchmarks
// that read doorman's and kube-proxy's metrics.
package promtext

import (
	"fmt"
	"io"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Sums returns, for each counter, gauge and untyped family, the sum of its
// samples over every label set: for a family without labels, its value.
// A histogram gives its name with "_count" and "_sum" appended, summed
// likewise; its buckets and summaries are left out.
func Sums(r io.Reader) (map[string]float64, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				out[name] += m.GetUntyped().GetValue()
			case m.GetHistogram() != nil:
				out[name+"_count"] += float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out, nil
}
