package cache

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
)

// BenchmarkSaveOneChange saves one changed entry into files of growing
// size: the cost must not grow with the file (it includes bbolt's fsync).
func BenchmarkSaveOneChange(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			c, err := Open(filepath.Join(b.TempDir(), "cache.db"), "node-1")
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			changes := newEntries(b, n)
			if err := c.Save(1, changes); err != nil {
				b.Fatal(err)
			}
			x := entry(b, "svc-000000", "10.244.1.1", "10.244.1.3")
			y := changes[0].New
			version := uint64(1)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				version++
				ch := state.Change{Key: x.Key, Old: y, New: x}
				if i%2 == 1 {
					ch = state.Change{Key: x.Key, Old: x, New: y}
				}
				if err := c.Save(version, []state.Change{ch}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSaveFullView writes a whole view of 100,000 entries into an
// empty file, as the first full view from the stream does before its ACK.
func BenchmarkSaveFullView(b *testing.B) {
	const n = 100_000
	changes := newEntries(b, n)
	for i := 0; b.Loop(); i++ {
		c, err := Open(filepath.Join(b.TempDir(), fmt.Sprintf("cache-%d.db", i)), "node-1")
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Save(1, changes); err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
