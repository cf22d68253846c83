package dataplane_test

import (
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/cache"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// BenchmarkStartUp measures an agent's start-up path at 100,000 Services
// × 2 endpoints with nothing changed since the last run: the cache file
// (written with the kernel's mark) is loaded, a fresh dataplane trusts the
// mark and Syncs the cached view without reading the elements back.
// load-s/op and sync-s/op are the two steps' wall time, cpu-s/op the
// process's CPU time for both.
func BenchmarkStartUp(b *testing.B) {
	const n = 100000
	node := testnet.NewNS(b, "bench")
	path := filepath.Join(b.TempDir(), "cache.db")
	writeStartUpCache(b, node, path, n)
	b.ResetTimer()
	var load, sync, cpu time.Duration
	for i := 0; i < b.N; i++ {
		before, start := processCPU(b), time.Now()
		c, view, reset, err := cache.OpenView(path, "node-1")
		if err != nil || reset != nil {
			b.Fatalf("OpenView: %v, reset %+v", err, reset)
		}
		loaded := time.Now()
		d := open(b, node)
		d.Trust(dataplane.DecodeMark(c.KernelMark()))
		stats, err := d.Sync(view.Entries())
		if err != nil {
			b.Fatalf("Sync: %v", err)
		}
		load, sync = load+loaded.Sub(start), sync+time.Since(loaded)
		cpu += processCPU(b) - before
		if stats.Ops != 0 || stats.Read != dataplane.ReadSkipped || view.Len() != n+1 {
			b.Fatalf("start-up Sync of %d entries: %d ops, read %q; want %d entries, 0 ops, read %q", view.Len(), stats.Ops, stats.Read, n+1, dataplane.ReadSkipped)
		}
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(load.Seconds()/float64(b.N), "load-s/op")
	b.ReportMetric(sync.Seconds()/float64(b.N), "sync-s/op")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// writeStartUpCache programs n Services into node and writes them to a
// cache file at path with the kernel's mark, as a running agent leaves it.
func writeStartUpCache(b *testing.B, node *testnet.NS, path string, n int) {
	b.Helper()
	entries := bigView(n)
	for _, e := range entries {
		var err error
		if sp := e.GetServicePort(); sp != nil {
			e.Digest, err = doormanv1.ValueDigest(sp)
		} else {
			e.Digest, err = doormanv1.ValueDigest(e.GetNode())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	d := open(b, node)
	if _, err := d.Sync(entries); err != nil {
		b.Fatalf("Sync: %v", err)
	}
	c, err := cache.Open(path, "node-1")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	c.SetKernelMark(d.Mark().Encode())
	changes := make([]state.Change, 0, len(entries))
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		changes = append(changes, state.Change{Key: key, New: entries[key]})
	}
	if err := c.Save(1, changes); err != nil {
		b.Fatal(err)
	}
}
