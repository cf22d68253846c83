package app

import (
	"runtime/debug"
	"sync"
)

// startGCPercent is the garbage collector's target while the agent loads
// its cache and programs the cached view. Both build a large heap that
// stays live (the view, then its rendering): at 100,000 Services the
// default target collects it over and over, more than doubling the time
// to the kernel holding the cached view. The heap this leaves behind is
// returned to the OS a few seconds after the start-up Sync (see
// dataplane's freeDelay); a memory limit (GOMEMLIMIT) still applies.
const startGCPercent = 400

var startGC struct {
	mu       sync.Mutex
	starting int // Runs between relaxGC and its restore
	percent  int // the target before the first of them
}

// relaxGC raises the garbage collector's target for a start-up and
// returns the function that ends it (idempotent). The target is
// process-wide: overlapping start-ups (tests) share it, and the last to
// end restores the previous one.
func relaxGC() (restore func()) {
	startGC.mu.Lock()
	defer startGC.mu.Unlock()
	if startGC.starting == 0 {
		startGC.percent = debug.SetGCPercent(startGCPercent)
	}
	startGC.starting++
	var once sync.Once
	return func() {
		once.Do(func() {
			startGC.mu.Lock()
			defer startGC.mu.Unlock()
			if startGC.starting--; startGC.starting == 0 {
				debug.SetGCPercent(startGC.percent)
			}
		})
	}
}
