package main

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestGrowth(t *testing.T) {
	p := &procSeries{}
	for m := range 31 {
		p.at = append(p.at, time.Duration(m)*time.Minute)
		// RSS flat at 100 with noise, goroutines from 50 to 60.
		p.rss = append(p.rss, 100+float64(m%2))
		p.goroutines = append(p.goroutines, 50+float64(m)/3)
		// The heap goal doubles at minute 20.
		p.heapGoal = append(p.heapGoal, 64+64*float64(m/20))
	}
	rss, gr, ok := growth(p, phase{from: 5 * time.Minute, to: 30 * time.Minute}, 2*time.Minute)
	if !ok {
		t.Fatal("growth: not measured")
	}
	// First window minutes 5–7 (RSS 101, 100, 101; goroutines 51.67…52.33),
	// last window 28–30 (100, 101, 100; 59.33…60).
	if want := (100+101+100.0)/(101+100+101) - 1; math.Abs(rss-want) > 1e-9 {
		t.Errorf("RSS growth %v, want %v", rss, want)
	}
	if want := (59.333333+59.666667+60)/(51.666667+52+52.333333) - 1; math.Abs(gr-want) > 1e-6 {
		t.Errorf("goroutine growth %v, want %v", gr, want)
	}
	if goal, ok := heapGoalGrowth(p, phase{from: 5 * time.Minute, to: 30 * time.Minute}, 2*time.Minute); !ok || goal != 1 {
		t.Errorf("heap goal growth %v (measured %v), want 1", goal, ok)
	}
	if goal, ok := heapGoalGrowth(p, phase{from: 0, to: 15 * time.Minute}, 2*time.Minute); !ok || goal != 0 {
		t.Errorf("heap goal growth before minute 20: %v (measured %v), want 0", goal, ok)
	}
	if _, _, ok := growth(p, phase{from: 5 * time.Minute, to: 8 * time.Minute}, 2*time.Minute); ok {
		t.Error("a phase shorter than two windows was measured")
	}
	if _, _, ok := growth(&procSeries{}, phase{from: 0, to: 30 * time.Minute}, 2*time.Minute); ok {
		t.Error("a process without readings was measured")
	}
}

func TestLinearAxis(t *testing.T) {
	a := newAxis(3, 87, true)
	if a.hi != 100 || a.step != 20 {
		t.Errorf("axis for 3…87: hi %v step %v, want 100 and 20", a.hi, a.step)
	}
	if got := a.frac(50); got != 0.5 {
		t.Errorf("frac(50) = %v, want 0.5", got)
	}
	if got := len(a.ticks()); got != 6 {
		t.Errorf("%d ticks, want 6 (0, 20, …, 100)", got)
	}
	l := newAxis(10, 5000, false)
	if l.lo != 1 || l.hi != 4 || len(l.ticks()) != 4 {
		t.Errorf("log axis for 10…5000: decades %v…%v with %d ticks, want 1…4 with 4", l.lo, l.hi, len(l.ticks()))
	}
}

// TestSettling: RSS that climbs back under the peak the process already
// had, with its heap goal flat, is settling; past that peak, or with the
// heap goal growing, it is not.
func TestSettling(t *testing.T) {
	series := func(rssEnd, goalEnd float64) *procSeries {
		p := &procSeries{}
		for m := range 31 {
			p.at = append(p.at, time.Duration(m)*time.Minute)
			// RSS 100 until minute 15, then rssEnd; peak 140 from the
			// start-up; heap goal 80, then goalEnd from minute 15.
			rss, goal := 100.0, 80.0
			if m >= 15 {
				rss, goal = rssEnd, goalEnd
			}
			p.rss = append(p.rss, rss)
			p.heapGoal = append(p.heapGoal, goal)
			p.peakRSS = append(p.peakRSS, max(140, rss))
		}
		return p
	}
	ph := phase{from: 5 * time.Minute, to: 30 * time.Minute}
	for _, c := range []struct {
		name          string
		rssEnd, goal  float64
		wantSettling  bool
		wantPeakBytes float64
	}{
		{"back under the peak, goal flat", 130, 81, true, 140},
		{"past the peak", 150, 81, false, 0},
		{"goal grew", 130, 90, false, 0},
	} {
		peak, ok := settling(series(c.rssEnd, c.goal), ph, 2*time.Minute, 0.05)
		if ok != c.wantSettling || peak != c.wantPeakBytes {
			t.Errorf("%s: settling %v (peak %v), want %v (%v)", c.name, ok, peak, c.wantSettling, c.wantPeakBytes)
		}
	}
	if _, ok := settling(&procSeries{at: []time.Duration{0, time.Minute}, rss: []float64{1, 2}, heapGoal: []float64{1, 1}}, ph, 2*time.Minute, 0.05); ok {
		t.Error("settling without peak readings")
	}
}

// TestLogAxisLabels: every decade of a log axis reads as written by hand,
// those below 1 included (10^-1 is not exactly 0.1 in floating point).
func TestLogAxisLabels(t *testing.T) {
	a := newAxis(0.0005, 150000, false)
	var got []string
	for _, v := range a.ticks() {
		got = append(got, a.label(v))
	}
	want := []string{"0.0001", "0.001", "0.01", "0.1", "1", "10", "100", "1k", "10k", "100k", "1M"}
	if !slices.Equal(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
}
