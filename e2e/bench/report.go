package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// Record is one measured figure, as written to $BENCH_OUT.
type Record struct {
	System   string  `json:"system"`
	Services int     `json:"services"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// report collects records in the order they were measured.
type report struct {
	records []Record
}

// add records one measured figure of a registered metric.
func (r *report) add(system string, services int, m *metric, value float64) {
	r.records = append(r.records, Record{System: system, Services: services, Metric: m.Key, Value: value, Unit: string(m.Unit)})
}

func (r *report) get(system string, services int, metric string) (Record, bool) {
	for _, rec := range r.records {
		if rec.System == system && rec.Services == services && rec.Metric == metric {
			return rec, true
		}
	}
	return Record{}, false
}

// writeJSON writes the records as one JSON list to path ("" = nowhere).
func (r *report) writeJSON(path string) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(r.records, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// table prints one row per (services, metric) the view shows, in the
// registry's order, and one column per system, then the ratio of the
// first system to each other one; under it, what each metric measures
// and any recorded metric the view does not show.
func (r *report) table(w io.Writer, systems []string, v view) {
	type row struct {
		n int
		m *metric
	}
	var sizes []int
	for _, rec := range r.records {
		if !slices.Contains(sizes, rec.Services) {
			sizes = append(sizes, rec.Services)
		}
	}
	slices.Sort(sizes)
	var rows []row
	var shown []*metric
	for _, n := range sizes {
		for _, m := range metricsShown(v) {
			if r.recorded(n, m.Key) {
				rows = append(rows, row{n, m})
				if !slices.Contains(shown, m) {
					shown = append(shown, m)
				}
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"services", "metric", "better"}
	head = append(head, systems...)
	for _, s := range systems[1:] {
		head = append(head, systems[0]+"/"+s)
	}
	_, _ = fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, k := range rows {
		_, _ = fmt.Fprintln(tw, strings.Join(r.cells(systems, k.n, k.m), "\t")+"\t")
	}
	_ = tw.Flush()
	r.legend(w, shown, v)
}

// cells are one table row: the figure of each system and the ratios.
func (r *report) cells(systems []string, n int, m *metric) []string {
	cells := []string{fmt.Sprint(n), m.Key, m.Better.String()}
	first, haveFirst := r.get(systems[0], n, m.Key)
	for _, s := range systems {
		if rec, ok := r.get(s, n, m.Key); ok {
			cells = append(cells, format(rec))
		} else {
			cells = append(cells, "-")
		}
	}
	for _, s := range systems[1:] {
		rec, ok := r.get(s, n, m.Key)
		if ok && haveFirst && rec.Value != 0 {
			cells = append(cells, fmt.Sprintf("%.3g", first.Value/rec.Value))
		} else {
			cells = append(cells, "-")
		}
	}
	return cells
}

// legend says what the shown metrics measure and names recorded ones the
// view leaves out.
func (r *report) legend(w io.Writer, shown []*metric, v view) {
	if len(shown) > 0 {
		_, _ = fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range shown {
		_, _ = fmt.Fprintf(tw, "%s\t%s\n", m.Key, m.Desc)
	}
	_ = tw.Flush()
	var missing []string
	for _, rec := range r.records {
		if !slices.ContainsFunc(metricsShown(v), func(m *metric) bool { return m.Key == rec.Metric }) && !slices.Contains(missing, rec.Metric) {
			missing = append(missing, rec.Metric)
		}
	}
	if len(missing) > 0 {
		_, _ = fmt.Fprintln(w, "recorded but not in this table (see metrics.go):", strings.Join(missing, ", "))
	}
}

func (r *report) recorded(services int, key string) bool {
	return slices.ContainsFunc(r.records, func(rec Record) bool { return rec.Services == services && rec.Metric == key })
}

// metricsShown are the registered metrics the view shows, in order.
func metricsShown(v view) []*metric {
	var out []*metric
	for _, m := range registry {
		if m.Shown&v != 0 {
			out = append(out, m)
		}
	}
	return out
}

func format(rec Record) string {
	v := rec.Value
	switch rec.Unit {
	case "seconds":
		switch {
		case v < 1e-3:
			return fmt.Sprintf("%.0fµs", v*1e6)
		case v < 1:
			return fmt.Sprintf("%.1fms", v*1e3)
		default:
			return fmt.Sprintf("%.2fs", v)
		}
	case "bytes":
		switch {
		case v < 1<<10:
			return fmt.Sprintf("%.0fB", v)
		case v < 1<<20:
			return fmt.Sprintf("%.1fKiB", v/(1<<10))
		default:
			return fmt.Sprintf("%.1fMiB", v/(1<<20))
		}
	case "ratio":
		return fmt.Sprintf("%.3f", v)
	default:
		if v == float64(int64(v)) {
			return fmt.Sprintf("%d", int64(v))
		}
		return fmt.Sprintf("%.3g", v)
	}
}
