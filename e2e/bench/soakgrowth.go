package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// phase is a stretch of the run in which a process keeps its role: before
// the middle's events, after them, and for the processes they leave alone
// the whole run.
type phase struct {
	name     string
	from, to time.Duration
}

// phases returns the stretches growth is measured over for one process,
// given when the middle's events began and ended.
func (s *soak) phases(process string, mid [2]time.Duration) []phase {
	end := s.f.duration
	out := []phase{
		{"before the middle", s.f.warmup, mid[0]},
		{"after the middle", mid[1] + s.f.warmup, end},
	}
	if process != "agent-"+s.c.Nodes()[0].Name && process != "controlplane-1" && process != "controlplane-2" {
		out = append(out, phase{"whole run", s.f.warmup, end})
	}
	return out
}

// growth is a process's relative growth of RSS and goroutines over a
// phase: the mean of the readings in its last window against that of its
// first; false when a window holds no reading.
func growth(p *procSeries, ph phase, window time.Duration) (rss, goroutines float64, ok bool) {
	mean := func(from, to time.Duration, v []float64) (float64, bool) {
		var sum float64
		var n int
		for i, at := range p.at {
			if at >= from && at <= to {
				sum += v[i]
				n++
			}
		}
		return sum / float64(n), n > 0
	}
	r0, ok0 := mean(ph.from, ph.from+window, p.rss)
	r1, ok1 := mean(ph.to-window, ph.to, p.rss)
	g0, _ := mean(ph.from, ph.from+window, p.goroutines)
	g1, _ := mean(ph.to-window, ph.to, p.goroutines)
	if !ok0 || !ok1 || ph.to-ph.from < 2*window || r0 == 0 || g0 == 0 {
		return 0, 0, false
	}
	return r1/r0 - 1, g1/g0 - 1, true
}

// checkGrowth prints each process's growth per phase and fails when one
// grew more than allowed, or a phase could not be measured.
func (s *soak) checkGrowth() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.series))
	var errs []error
	fmt.Printf("%-18s %-18s %12s %12s\n", "process", "phase", "RSS growth", "goroutines")
	for _, name := range names {
		for _, ph := range s.phases(name, s.middle) {
			rss, gr, ok := growth(s.series[name], ph, s.f.window)
			if !ok {
				errs = append(errs, fmt.Errorf("%s %s (%s–%s): too few readings to measure growth", name, ph.name, ph.from, ph.to))
				continue
			}
			fmt.Printf("%-18s %-18s %+11.1f%% %+11.1f%%\n", name, ph.name, 100*rss, 100*gr)
			if rss > s.f.maxGrowth || gr > s.f.maxGrowth {
				errs = append(errs, fmt.Errorf("%s grew %s: RSS %+.1f%%, goroutines %+.1f%% (allowed %.0f%%)", name, ph.name, 100*rss, 100*gr, 100*s.f.maxGrowth))
			}
		}
	}
	return errors.Join(errs...)
}

// panels plots every process's RSS and goroutines against minutes.
func (s *soak) panels() []panel {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.series))
	rss := panel{Title: "RSS over the soak", XLabel: "minutes", YLabel: "MiB", Linear: true}
	gr := panel{Title: "goroutines over the soak", XLabel: "minutes", YLabel: "goroutines", Linear: true}
	for i, name := range names {
		p := s.series[name]
		r := series{Label: name, Color: palette[i%len(palette)], Dashed: i >= len(palette)}
		g := r
		for j, at := range p.at {
			r.X, r.Y = append(r.X, at.Minutes()), append(r.Y, p.rss[j]/(1<<20))
			g.X, g.Y = append(g.X, at.Minutes()), append(g.Y, p.goroutines[j])
		}
		rss.Series, gr.Series = append(rss.Series, r), append(gr.Series, g)
	}
	return []panel{rss, gr}
}
