package main

import (
	"math"
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
