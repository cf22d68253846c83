package agent

import (
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// NewRestoring returns an agent made before its view is restored from the
// cache, so that the stream to the control plane opens while the view
// loads and the kernel is programmed: the control plane's answer and the
// round trips then overlap the start-up. Until Open, Hello says hello
// (what the cache records of the view it holds; nil: Hello waits for
// Open), and Handle and Resync wait: no update is applied to a view or a
// kernel not yet restored. Restore hands the agent its view, Start
// programs it, Open ends the start-up.
func NewRestoring(node string, hello *doormanv1.Holding, kernel Kernel) *Agent {
	a := newAgent(node, kernel, state.New())
	a.hello = hello
	return a
}

// Restore gives an agent made with NewRestoring the view restored from
// the cache (empty: none) and the store (nil: no cache); Start then
// programs it. It must not be called after Open.
func (a *Agent) Restore(view *state.View, store Store) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.restoreView(view, store)
}

// restoreView sets the view and store. Called with a.mu held (or before
// the agent is shared).
func (a *Agent) restoreView(view *state.View, store Store) {
	a.view, a.store = view, store
	a.loadedFrom = LoadedFromNone
	if view.Version() > 0 {
		a.loadedFrom = LoadedFromCache
	}
	if store != nil {
		a.freshness = store.Freshness()
	}
}

// waitStarted waits until the start-up is done (Open; at once for an
// agent made with New).
func (a *Agent) waitStarted() { <-a.started }

// isStarted reports whether the start-up is done.
func (a *Agent) isStarted() bool {
	select {
	case <-a.started:
		return true
	default:
		return false
	}
}

// Open ends the start-up of an agent made with NewRestoring, once its
// view is restored (Restore), programmed (Start; after a failed Start the
// first update Syncs) and whatever must come before any update is done:
// Handle and Resync go on. A Hello sent before it said what the cache
// recorded; when the restored view holds something else (a file changed
// in between, or set aside as unreadable), the stream opened with it must
// be opened again (see Outcome.Resume). For an agent made with New it
// does nothing.
func (a *Agent) Open() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.helloMu.Lock()
	defer a.helloMu.Unlock()
	if a.isStarted() {
		return
	}
	if a.helloSent && !proto.Equal(a.hello, a.view.Holding()) {
		a.helloStale = true
	}
	a.hello, a.helloSent = nil, false
	close(a.started)
}

// holding is what the Hello says the agent holds: the cache's record
// during the start-up (without waiting for Start, which holds a.mu while
// it programs the kernel), the view's from then on.
func (a *Agent) holding() *doormanv1.Holding {
	a.helloMu.Lock()
	if !a.isStarted() && a.hello != nil {
		a.helloSent = true
		h := proto.Clone(a.hello).(*doormanv1.Holding)
		a.helloMu.Unlock()
		return h
	}
	a.helloMu.Unlock()
	a.waitStarted()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.helloMu.Lock()
	defer a.helloMu.Unlock()
	a.helloStale = false
	return a.view.Holding()
}

// isHelloStale reports whether the restored view holds something else
// than the last Hello said.
func (a *Agent) isHelloStale() bool {
	a.helloMu.Lock()
	defer a.helloMu.Unlock()
	return a.helloStale
}

// storeHolding is what the cache is to record of the view it holds after
// a write: the view's Hello, unless the kernel refused some values (the
// file then holds the kernel's, whose digests the view does not keep):
// none, and the next start waits for the view before its Hello.
func (a *Agent) storeHolding() *doormanv1.Holding {
	if len(a.rejected) > 0 {
		return nil
	}
	return a.view.Holding()
}
