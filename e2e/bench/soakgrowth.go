package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	r0, ok0 := p.mean(ph.from, ph.from+window, p.rss)
	r1, ok1 := p.mean(ph.to-window, ph.to, p.rss)
	g0, _ := p.mean(ph.from, ph.from+window, p.goroutines)
	g1, _ := p.mean(ph.to-window, ph.to, p.goroutines)
	if !ok0 || !ok1 || ph.to-ph.from < 2*window || r0 == 0 || g0 == 0 {
		return 0, 0, false
	}
	return r1/r0 - 1, g1/g0 - 1, true
}

// heapGoalGrowth is, as growth measures RSS, the growth of the heap goal
// (the next collection's target, proportional to the heap live after the
// last one): RSS that grows while it stays flat is a process settling
// into its collections' rhythm, not memory kept.
func heapGoalGrowth(p *procSeries, ph phase, window time.Duration) (float64, bool) {
	h0, ok0 := p.mean(ph.from, ph.from+window, p.heapGoal)
	h1, ok1 := p.mean(ph.to-window, ph.to, p.heapGoal)
	if !ok0 || !ok1 || h0 == 0 {
		return 0, false
	}
	return h1/h0 - 1, true
}

// breakdown says by how much each part of RSS moved over ph, in MiB from
// the phase's first window to its last: anonymous and file-backed pages,
// the heap's spans in use and its retained idle memory.
func (p *procSeries) breakdown(ph phase, window time.Duration) string {
	parts := []struct {
		name string
		v    []float64
	}{{"RSS", p.rss}, {"anon", p.rssAnon}, {"file", p.rssFile}, {"heap in use", p.heapInuse}, {"heap idle retained", p.heapRetained}}
	var out []string
	for _, part := range parts {
		v0, ok0 := p.mean(ph.from, ph.from+window, part.v)
		v1, ok1 := p.mean(ph.to-window, ph.to, part.v)
		if !ok0 || !ok1 {
			continue
		}
		out = append(out, fmt.Sprintf("%s %.1f → %.1f MiB", part.name, v0/(1<<20), v1/(1<<20)))
	}
	return strings.Join(out, ", ")
}

// mean is the mean of the readings of v taken between from and to; false
// when there is none.
func (p *procSeries) mean(from, to time.Duration, v []float64) (float64, bool) {
	var sum float64
	var n int
	for i, at := range p.at {
		if at >= from && at <= to && i < len(v) {
			sum += v[i]
			n++
		}
	}
	return sum / float64(n), n > 0
}

// checkGrowth prints each process's growth per phase and fails when one
// grew more than allowed, or a phase could not be measured. RSS that grew
// while the heap goal stayed within the bound, and ended no higher than
// the most the process had held before the phase, is a process filling
// its heap back up to its goal (a standby whose streams went, a replica
// that gave its start-up garbage back), not memory kept: it is printed as
// settling and does not fail the run.
func (s *soak) checkGrowth() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.series))
	var errs []error
	fmt.Printf("%-18s %-18s %12s %12s %12s\n", "process", "phase", "RSS growth", "goroutines", "heap goal")
	for _, name := range names {
		p := s.series[name]
		for _, ph := range s.phases(name, s.middle) {
			rss, gr, ok := growth(p, ph, s.f.window)
			if !ok {
				errs = append(errs, fmt.Errorf("%s %s (%s–%s): too few readings to measure growth", name, ph.name, ph.from, ph.to))
				continue
			}
			goal, _ := heapGoalGrowth(p, ph, s.f.window)
			fmt.Printf("%-18s %-18s %+11.1f%% %+11.1f%% %+11.1f%%\n", name, ph.name, 100*rss, 100*gr, 100*goal)
			if rss > s.f.maxGrowth {
				fmt.Printf("%-18s %-18s where RSS moved: %s\n", name, ph.name, p.breakdown(ph, s.f.window))
			}
			rssGrew := rss > s.f.maxGrowth
			if peak, ok := settling(p, ph, s.f.window, s.f.maxGrowth); rssGrew && ok {
				fmt.Printf("%-18s %-18s settling: RSS back under the %.1f MiB it held before, heap goal %+.1f%%\n", name, ph.name, peak/(1<<20), 100*goal)
				rssGrew = false
			}
			if rssGrew || gr > s.f.maxGrowth {
				errs = append(errs, fmt.Errorf("%s grew %s: RSS %+.1f%%, goroutines %+.1f%%, heap goal %+.1f%% (allowed %.0f%%)", name, ph.name, 100*rss, 100*gr, 100*goal, 100*s.f.maxGrowth))
			}
		}
	}
	return errors.Join(errs...)
}

// settling reports whether p's RSS growth over ph is the heap filling up
// to its goal: the heap goal grew at most maxGrowth and the RSS of the
// last window is no more than the peak RSS (VmHWM) the process had at the
// phase's start, which it returns.
func settling(p *procSeries, ph phase, window time.Duration, maxGrowth float64) (float64, bool) {
	goal, ok := heapGoalGrowth(p, ph, window)
	if !ok || goal > maxGrowth {
		return 0, false
	}
	var peak float64
	for i, at := range p.at {
		if at >= ph.from && i < len(p.peakRSS) {
			peak = p.peakRSS[i]
			break
		}
	}
	end, ok := p.mean(ph.to-window, ph.to, p.rss)
	if !ok || peak == 0 || end > peak {
		return 0, false
	}
	return peak, true
}

// panels plots every process's RSS and goroutines against minutes.
func (s *soak) panels() []panel {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.series))
	rss := panel{Title: "RSS over the soak", XLabel: "minutes", YLabel: "MiB", Linear: true}
	gr := panel{Title: "goroutines over the soak", XLabel: "minutes", YLabel: "goroutines", Linear: true}
	goal := panel{Title: "heap goal over the soak", XLabel: "minutes", YLabel: "MiB", Linear: true}
	for i, name := range names {
		p := s.series[name]
		r := series{Label: name, Color: palette[i%len(palette)], Dashed: i >= len(palette)}
		g, h := r, r
		for j, at := range p.at {
			r.X, r.Y = append(r.X, at.Minutes()), append(r.Y, p.rss[j]/(1<<20))
			g.X, g.Y = append(g.X, at.Minutes()), append(g.Y, p.goroutines[j])
			h.X, h.Y = append(h.X, at.Minutes()), append(h.Y, p.heapGoal[j]/(1<<20))
		}
		rss.Series, gr.Series, goal.Series = append(rss.Series, r), append(gr.Series, g), append(goal.Series, h)
	}
	return []panel{rss, gr, goal}
}
