package hub

import (
	"testing"
)

// BenchmarkFirstComputation measures MarkReady after initial lists of
// 20,000 Services with two slices each: the first computation and
// encoding of every Service, which readiness waits for.
func BenchmarkFirstComputation(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		h := New(Config{VersionSeed: 1, Load: true})
		loadLists(h, 20000, 2)
		b.StartTimer()
		h.MarkReady()
	}
}
