package dataplane_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"

	"github.com/doorman-proxy/doorman/internal/race"
	"github.com/doorman-proxy/doorman/internal/testnet"
)

func memRSS(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestMemorySync programs 10,000 Services × 2 endpoints into a fresh
// namespace and reports what the dataplane keeps: live heap after GC and
// the process's RSS, both before the view is built and after Sync (the
// view itself, which the agent holds anyway, is kept alive and counted).
// DOORMAN_MEMTEST_HEAPPROFILE names a file for a heap profile.
func TestMemorySync(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	node := testnet.NewNS(t, "node")
	sample := func() (uint64, uint64) {
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, memRSS(t)
	}
	heap0, rss0 := sample()
	view := bigView(10000)
	heapView, _ := sample()
	d := open(t, node)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	_, rssPeak := 0, memRSS(t)
	heap1, rss1 := sample()
	if p := os.Getenv("DOORMAN_MEMTEST_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	t.Logf("10,000 services: view %.1f MiB heap; dataplane after sync %.1f MiB heap; process rss %.1f → %.1f MiB (right after sync %.1f MiB)",
		float64(heapView-heap0)/(1<<20), float64(int64(heap1)-int64(heapView))/(1<<20),
		float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(rssPeak)/(1<<20))
	runtime.KeepAlive(view)
	runtime.KeepAlive(d)
	// What building and programming the view added to the process's RSS
	// (other tests of the package may have run before in this process),
	// and the dataplane's own heap: what it keeps for later updates.
	if grown, budget := int64(rss1)-int64(rss0), syncRSSBudget*race.MemoryFactor(); grown > budget {
		t.Errorf("rss grew by %.1f MiB programming 10,000 Services, want at most %d MiB", float64(grown)/(1<<20), budget>>20)
	}
	if kept, budget := int64(heap1)-int64(heapView), syncHeapBudget*race.MemoryFactor(); kept > budget {
		t.Errorf("dataplane heap after Sync %.1f MiB, want at most %d MiB", float64(kept)/(1<<20), budget>>20)
	}
}

// Budgets of TestMemorySync, about twice what it measures on amd64.
const (
	syncRSSBudget  = 24 << 20
	syncHeapBudget = 6 << 20
)
