package model

import (
	"runtime"
	"slices"
	"sync"
)

// flushBatch is how many Services Flush computes at once: enough to keep
// every CPU busy, few enough that their Results stay small beside the
// model.
const flushBatch = 4096

// Defer makes the changes that follow only noted: their Services are
// computed once each, by Flush, instead of once per object. Loading the
// initial lists so computes a Service once, with all its slices, not
// once more before they come; and Flush computes on every CPU.
func (m *Model) Defer() {
	if m.dirty == nil {
		m.dirty = map[string]struct{}{}
	}
}

// Pending is how many Services Flush would compute.
func (m *Model) Pending() int { return len(m.dirty) }

// Flush ends Defer: it computes every Service changed since, and gives
// their Results (as the changes would have, in the order of the
// Services' names) to apply, one by one. Batches are computed on every CPU
// while the previous one is applied: compute only reads the Services and
// slices, which apply does not change. Changes after Flush are computed
// at once again.
func (m *Model) Flush(apply func(Result)) {
	ids := make([]string, 0, len(m.dirty))
	for id := range m.dirty {
		ids = append(ids, id)
	}
	m.dirty = nil
	slices.Sort(ids)
	if len(m.frontends.byService) == 0 {
		// The first Flush claims every Service's frontends: room for
		// them at once rather than as the maps double.
		m.frontends = newFrontendsFor(len(ids))
	}
	computed := make(chan []Result, 1)
	go func() {
		defer close(computed)
		for batch := range slices.Chunk(ids, flushBatch) {
			computed <- m.computeAll(batch)
		}
	}()
	for results := range computed {
		for _, r := range results {
			for _, out := range m.settle(r) {
				apply(out)
			}
		}
	}
}

// computeAll returns the Results of the Services ids, computed on every
// CPU.
func (m *Model) computeAll(ids []string) []Result {
	out := make([]Result, len(ids))
	workers := runtime.GOMAXPROCS(0)
	per := (len(ids) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(ids); lo += per {
		hi := min(lo+per, len(ids))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				out[i] = m.compute(ids[i])
			}
		})
	}
	wg.Wait()
	return out
}
