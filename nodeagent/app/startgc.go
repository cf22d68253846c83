package app

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
)

// startGCPercent is the garbage collector's target while the agent loads
// its cache and programs the cached view, or, with nothing cached to
// program, its first view from the stream. Each builds a large heap that
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

// firstViewGC ends the start-up's target once the agent programmed a view
// from the stream: an update acknowledged (end is idempotent, so every
// later one is a no-op). It matters when no cached view was programmed at
// start-up (a new node, a cache lost or too old), where the first full
// view is the start-up's large heap.
type firstViewGC struct{ end func() }

func (f firstViewGC) Updated(out agent.Outcome) {
	if out.Err == nil && out.Version > 0 {
		f.end()
	}
}

// firstViewGCBound ends the start-up's target when no view came from the
// stream for that long (no control plane answers): the relaxed target is
// for a start-up, not for a node waiting.
const firstViewGCBound = 2 * time.Minute
