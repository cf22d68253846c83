package drift

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
)

// DefaultDebounce is how long the loop waits after a foreign change before
// it resyncs, so that a burst of edits (nft -f, a script) costs one Sync.
const DefaultDebounce = 100 * time.Millisecond

// Config configures Run.
type Config struct {
	Agent *agent.Agent
	// Monitor reports foreign changes; nil leaves only the periodic resync.
	Monitor *Monitor
	// Period between backstop resyncs; 0 disables them.
	Period time.Duration
	// Debounce after a foreign change; 0 means DefaultDebounce.
	Debounce time.Duration
	// Queued, when set, is called as each signal arms a resync (health
	// counts the repair as pending from then).
	Queued func()
	Logger hclog.Logger
}

// Run resyncs the agent's kernel on foreign changes and on the period until
// ctx is done.
func Run(ctx context.Context, cfg Config) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	debounce := cfg.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	var signals <-chan Signal
	var monitorDone <-chan struct{}
	if cfg.Monitor != nil {
		signals, monitorDone = cfg.Monitor.signals, cfg.Monitor.done
	}
	var tick <-chan time.Time
	if cfg.Period > 0 {
		t := time.NewTicker(cfg.Period)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending agent.Trigger // 0: no resync armed

	resync := func(t agent.Trigger) { resyncAndLog(cfg.Agent, t, log) }

	for {
		select {
		case <-ctx.Done():
			return
		case s := <-signals:
			if cfg.Queued != nil {
				cfg.Queued()
			}
			t := agent.TriggerForeignChange
			if s == SignalLost {
				t = agent.TriggerEventsLost
			}
			if pending == 0 {
				timer.Reset(debounce)
			}
			if pending == 0 || t == agent.TriggerEventsLost {
				pending = t
			}
		case <-timer.C:
			t := pending
			pending = 0
			resync(t)
		case <-monitorDone:
			log.Error("nftables event monitor stopped; drift is found by the periodic resync only", "error", cfg.Monitor.err, "period", cfg.Period)
			signals, monitorDone = nil, nil
			resync(agent.TriggerEventsLost)
		case <-tick:
			resync(agent.TriggerPeriodic)
		}
	}
}

// resyncAndLog runs one resync and logs what it found, at a level that
// says whether an operator should look.
func resyncAndLog(a *agent.Agent, t agent.Trigger, log hclog.Logger) {
	start := time.Now()
	out := a.Resync(t)
	took := time.Since(start)
	switch {
	case out.Skipped:
		log.Debug("resync skipped: no view yet", "trigger", t)
	case out.Unchanged:
		log.Debug("resync found the kernel unchanged since the last own commit", "trigger", t, "took", took)
	case out.Err != nil:
		log.Error("resync failed", "trigger", t, "error", out.Err, "took", took)
	case out.Repaired:
		log.Warn("kernel drift repaired", "trigger", t, "ops", out.Ops, "took", took)
	case out.Ops > 0:
		log.Info("resync changed the kernel", "trigger", t, "ops", out.Ops, "took", took)
	default:
		log.Debug("resync found the kernel right", "trigger", t, "took", took)
	}
	if out.Warning != nil {
		log.Warn("resync left entries out", "trigger", t, "error", out.Warning)
	}
	if out.Retired > 0 {
		log.Debug("unused chains retired", "chains", out.Retired)
	}
	if out.RetireErr != nil {
		log.Warn("unused chains not retired", "error", out.RetireErr)
	}
}
