package cache

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestSaveReleasesPages: after a large Save, the page buffers bbolt pools
// are not left on the heap. One collection alone would only move them to
// the pool's victim cache, where they stay reachable.
func TestSaveReleasesPages(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	c, err := Open(filepath.Join(t.TempDir(), "cache.db"), "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	const n = 10_000
	changes := newEntries(t, n)
	heapAlloc := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heapAlloc()
	if err := c.Save(1, changes); err != nil {
		t.Fatal(err)
	}
	after := heapAlloc()
	// The file holds about 2 MiB of records: were its pages kept, the
	// heap would grow by that much.
	if grown := int64(after) - int64(before); grown > 1<<20 {
		t.Errorf("heap grew by %.1f MiB over a Save of %d records, want under 1 MiB: bbolt's page buffers are still held", float64(grown)/(1<<20), n)
	}
	runtime.KeepAlive(changes)
}

// mappedRSS is the resident size of this process's mappings of path, from
// /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	var rss int64
	in := false
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4:
			in = len(f) >= 6 && f[5] == path
		case in && len(f) == 3 && f[0] == "Rss:":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			rss += kb << 10
		}
	}
	return rss
}

// TestOpenViewUnmapsLoadedPages: restoring the view reads the whole file,
// but the open cache does not keep the pages it read resident.
func TestOpenViewUnmapsLoadedPages(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	const n = 10_000
	changes := newEntries(t, n)
	if err := c.Save(1, changes); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	c, view, reset, err := OpenView(path, "node-1")
	if err != nil || reset != nil {
		t.Fatalf("OpenView: %v (reset %v)", err, reset)
	}
	defer func() { _ = c.Close() }()
	if view.Len() != n {
		t.Fatalf("view of %d entries, want %d", view.Len(), n)
	}
	// Load alone leaves nearly the whole file resident.
	if rss := mappedRSS(t, path); rss > fi.Size()/4 {
		t.Errorf("%.1f MiB of the %.1f MiB file resident after OpenView, want under a quarter", float64(rss)/(1<<20), float64(fi.Size())/(1<<20))
	}
}
