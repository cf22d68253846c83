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

func (r *report) add(system string, services int, metric string, value float64, unit string) {
	r.records = append(r.records, Record{System: system, Services: services, Metric: metric, Value: value, Unit: unit})
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

// table prints one row per (services, metric) and one column per system,
// then the ratio of the first system to each other one.
func (r *report) table(w io.Writer, systems []string) {
	type row struct {
		n      int
		metric string
	}
	var rows []row
	seen := map[row]bool{}
	for _, rec := range r.records {
		k := row{rec.Services, rec.Metric}
		if !seen[k] {
			seen[k] = true
			rows = append(rows, k)
		}
	}
	slices.SortStableFunc(rows, func(a, b row) int { return a.n - b.n })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := []string{"services", "metric"}
	head = append(head, systems...)
	for _, s := range systems[1:] {
		head = append(head, systems[0]+"/"+s)
	}
	_, _ = fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	for _, k := range rows {
		cells := []string{fmt.Sprint(k.n), k.metric}
		first, haveFirst := r.get(systems[0], k.n, k.metric)
		for _, s := range systems {
			if rec, ok := r.get(s, k.n, k.metric); ok {
				cells = append(cells, format(rec))
			} else {
				cells = append(cells, "-")
			}
		}
		for _, s := range systems[1:] {
			rec, ok := r.get(s, k.n, k.metric)
			if ok && haveFirst && rec.Value != 0 {
				cells = append(cells, fmt.Sprintf("%.3g", first.Value/rec.Value))
			} else {
				cells = append(cells, "-")
			}
		}
		_, _ = fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	_ = tw.Flush()
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
