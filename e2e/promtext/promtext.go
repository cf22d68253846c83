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

// Histogram is what a histogram's series add up to: how many samples,
// and their sum.
type Histogram struct {
	Count uint64
	Sum   float64
}

// HistogramsBy returns the histogram family name's series added up by the
// value of label (series without it count under ""). A vector nothing was
// observed in yet is absent from the text: it gives an empty map.
func HistogramsBy(r io.Reader, name, label string) (map[string]Histogram, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]Histogram{}
	f, ok := families[name]
	if !ok {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			return nil, fmt.Errorf("metrics: %s is not a histogram", name)
		}
		v := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				v = l.GetValue()
			}
		}
		sum := out[v]
		sum.Count += h.GetSampleCount()
		sum.Sum += h.GetSampleSum()
		out[v] = sum
	}
	return out, nil
}
