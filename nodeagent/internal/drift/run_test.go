package drift

import (
	"cmp"
	"context"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// driftingKernel is the kernel in memory, which someone else keeps
// changing: its services chain is flushed before each Sync, so that each
// Sync repairs it, and it is never unchanged since the last own commit.
type driftingKernel struct {
	*dataplane.Fake
}

func (k driftingKernel) Unchanged() bool { return false }

func (k driftingKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	k.FlushChain("services")
	return k.Fake.Sync(view)
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name        string
		monitor     bool
		period      time.Duration
		act         func(m *Monitor)
		wait        time.Duration
		debounce    time.Duration // 150 ms unless set
		wantSyncs   func(n int) bool
		wantRepairs func(n uint64) bool
	}{
		// The debounce is long beside the burst's 25 ms, so that a
		// loaded machine stretching the sleeps cannot split it.
		{name: "a burst of foreign changes costs one resync", monitor: true,
			act: func(m *Monitor) {
				for range 5 {
					m.signal(SignalForeign)
					time.Sleep(5 * time.Millisecond)
				}
			},
			debounce:    time.Second,
			wait:        1600 * time.Millisecond,
			wantSyncs:   func(n int) bool { return n == 1 },
			wantRepairs: func(n uint64) bool { return n == 1 }},
		{name: "no signal, no period: no resync", monitor: true, act: func(*Monitor) {},
			wait:        200 * time.Millisecond,
			wantSyncs:   func(n int) bool { return n == 0 },
			wantRepairs: func(n uint64) bool { return n == 0 }},
		{name: "periodic while watched: a changed kernel is a repair too", monitor: true, period: 40 * time.Millisecond, act: func(*Monitor) {},
			wait:        300 * time.Millisecond,
			wantSyncs:   func(n int) bool { return n >= 2 },
			wantRepairs: func(n uint64) bool { return n >= 2 }},
		{name: "periodic without a monitor: changes are repairs", period: 40 * time.Millisecond, act: func(*Monitor) {},
			wait:        300 * time.Millisecond,
			wantSyncs:   func(n int) bool { return n >= 2 },
			wantRepairs: func(n uint64) bool { return n >= 2 }},
		{name: "the monitor stops: one resync, then unwatched", monitor: true,
			act:         func(m *Monitor) { close(m.done) },
			wait:        200 * time.Millisecond,
			wantSyncs:   func(n int) bool { return n == 1 },
			wantRepairs: func(n uint64) bool { return n == 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := driftingKernel{dataplane.NewFake(dataplane.Options{})}
			view, err := state.Restore(3, nil)
			if err != nil {
				t.Fatal(err)
			}
			a := agent.New("node-1", view, k, nil)
			var m *Monitor
			if tc.monitor {
				m = &Monitor{signals: make(chan Signal, 2), done: make(chan struct{})}
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				debounce := cmp.Or(tc.debounce, 150*time.Millisecond)
				Run(ctx, Config{Agent: a, Monitor: m, Period: tc.period, Debounce: debounce})
			}()
			time.Sleep(20 * time.Millisecond)
			tc.act(m)
			time.Sleep(tc.wait)
			cancel()
			<-done
			if n := k.Count("sync"); !tc.wantSyncs(n) {
				t.Errorf("syncs: %d", n)
			}
			retires := k.Count("retire")
			// Unused chains are retired by the periodic resync only.
			if (tc.period > 0) != (retires > 0) {
				t.Errorf("chain retirements: %d with period %v", retires, tc.period)
			}
			if n := a.Counters().DriftRepairs; !tc.wantRepairs(n) {
				t.Errorf("drift repairs: %d", n)
			}
		})
	}
}
