package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	series := func(api, cp, stream, kernel float64, n float64) map[string]float64 {
		m := map[string]float64{}
		for i, v := range []float64{api, cp, stream, kernel} {
			m[stages[i].series+"_count"] = n
			m[stages[i].series+"_sum"] = v
		}
		return m
	}
	before := series(1, 2, 3, 4, 10)
	// One change: 2 ms to the control plane's event, 3 ms to the send,
	// 3.5 ms to the agent, 9.5 ms to the commit.
	got, ok := split(before, series(1.002, 2.003, 3.0035, 4.0095, 11))
	if !ok {
		t.Fatal("split: not ok")
	}
	want := []time.Duration{2 * time.Millisecond, time.Millisecond, 500 * time.Microsecond, 6 * time.Millisecond}
	round := func(d []time.Duration) []time.Duration {
		var out []time.Duration
		for _, x := range d {
			out = append(out, x.Round(time.Microsecond))
		}
		return out
	}
	if diff := cmp.Diff(want, round(got)); diff != "" {
		t.Errorf("shares (-want +got):\n%s", diff)
	}
	// Two ports: two samples per series, the mean counts.
	got, ok = split(before, series(1.004, 2.006, 3.007, 4.019, 12))
	if !ok {
		t.Fatal("split of two ports: not ok")
	}
	if diff := cmp.Diff(want, round(got)); diff != "" {
		t.Errorf("shares of two ports (-want +got):\n%s", diff)
	}
	// A series without a new sample: not split.
	now := series(1.002, 2.003, 3.0035, 4.0095, 11)
	now[stages[3].series+"_count"] = 10
	if _, ok := split(before, now); ok {
		t.Error("split with the kernel series unchanged: ok")
	}
}
