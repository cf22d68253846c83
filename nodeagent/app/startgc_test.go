package app

import (
	"errors"
	"runtime/debug"
	"testing"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
)

// gcPercent reads the garbage collector's target without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestFirstViewEndsStartGC: with nothing cached, the relaxed target lasts
// until an update is programmed and acknowledged; a refused update or
// an update without a view does not end it.
func TestFirstViewEndsStartGC(t *testing.T) {
	before := gcPercent()
	defer debug.SetGCPercent(before)
	f := firstViewGC{end: relaxGC()}
	if got := gcPercent(); got != startGCPercent {
		t.Fatalf("target %d during the start-up, want %d", got, startGCPercent)
	}
	f.Updated(agent.Outcome{Version: 5, Err: errors.New("refused")})
	f.Updated(agent.Outcome{})
	if got := gcPercent(); got != startGCPercent {
		t.Fatalf("target %d after a refused update, want still %d", got, startGCPercent)
	}
	f.Updated(agent.Outcome{Version: 6})
	if got := gcPercent(); got != before {
		t.Errorf("target %d after the first view, want %d back", got, before)
	}
	f.Updated(agent.Outcome{Version: 7}) // idempotent
	if got := gcPercent(); got != before {
		t.Errorf("target %d after a later update, want %d", got, before)
	}
}
