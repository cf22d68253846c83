package agent

import (
	"fmt"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
)

// Trigger is why the kernel is reconciled outside an update.
type Trigger int

const (
	// TriggerForeignChange: someone else committed a change to doorman's
	// table.
	TriggerForeignChange Trigger = iota + 1
	// TriggerEventsLost: the monitor of nftables events lost events, so any
	// change may have gone unseen.
	TriggerEventsLost
	// TriggerPeriodic: the backstop timer.
	TriggerPeriodic
)

func (t Trigger) String() string {
	switch t {
	case TriggerForeignChange:
		return "foreign change"
	case TriggerEventsLost:
		return "events lost"
	case TriggerPeriodic:
		return "periodic"
	}
	return fmt.Sprintf("trigger(%d)", int(t))
}

// ResyncOutcome is what one Resync did.
type ResyncOutcome struct {
	Trigger Trigger
	// Skipped: the agent holds no view yet; the first update programs it.
	Skipped bool
	// Unchanged: a periodic resync found that nobody committed to the
	// kernel since the agent's own last commit (see Unchanging), so the
	// kernel holds the view: nothing was read back.
	Unchanged bool
	// Ops is the number of kernel objects the Sync changed: 0 when the
	// kernel was right.
	Ops int
	// Repaired: the kernel had drifted and was put back (counted in
	// DriftRepairs).
	Repaired bool
	// Retired is the number of unused per-endpoint-count chains the
	// periodic resync deleted (not drift).
	Retired int
	// RetireErr: some unused chain could not be deleted (other than still
	// busy); it stays for the next period.
	RetireErr error
	// Warning: entries left out of the kernel.
	Warning error
	// Err: the Sync failed; the next update programs the whole view.
	Err error
}

// Resync reconciles the kernel with the view the agent holds: a Sync reads
// doorman's whole table and changes only what differs, so it is called on a
// foreign change (debounced), after lost events, and on a long period as a
// backstop; never per update. Sync never retires chains, so a Sync that
// changed something found the kernel changed by someone else: a drift
// repair. A periodic resync while nobody committed to the kernel since the
// agent's own last commit (Unchanged) reads nothing back: the kernel holds
// the view. The periodic resync then retires the per-endpoint-count chains
// the agent's own updates left unused (not drift, not counted as such).
func (a *Agent) Resync(t Trigger) ResyncOutcome {
	a.waitStarted()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := ResyncOutcome{Trigger: t}
	if a.view.Version() == 0 {
		// Nothing was ever programmed: whatever the kernel holds keeps
		// serving until the first update.
		out.Skipped = true
		return out
	}
	if t == TriggerPeriodic && !a.needSync && a.kernelHolds && Unchanged(a.kernel) {
		out.Unchanged = true
		a.retire(&out)
		return out
	}
	var stats dataplane.Stats
	stats, out.Warning, out.Err = a.sync()
	out.Ops = stats.Ops
	if out.Err != nil {
		a.needSync = true
		out.Err = fmt.Errorf("resync (%s): %w", t, out.Err)
		a.lastError = out.Err.Error()
		return out
	}
	a.needSync = false
	a.kernelHolds = true
	if out.Warning != nil {
		a.lastError = out.Warning.Error()
	}
	if out.Ops > 0 {
		out.Repaired = true
		a.counters.DriftRepairs++
	}
	if t == TriggerPeriodic {
		a.retire(&out)
	}
	return out
}

// retire deletes the per-endpoint-count chains no entry uses any more.
func (a *Agent) retire(out *ResyncOutcome) {
	out.Retired, out.RetireErr = a.kernel.RetireUnused()
	if out.RetireErr != nil {
		out.RetireErr = fmt.Errorf("retire unused chains: %w", out.RetireErr)
	}
}

// Unchanging is a Kernel that can tell whether anyone committed to the
// kernel (any table of its network namespace) since its own last commit
// (*dataplane.Dataplane, through the generation; the wrappers around it
// pass the question on).
type Unchanging interface {
	Unchanged() bool
}

// Unchanged reports whether k says nobody committed since its own last
// commit; false when k cannot tell.
func Unchanged(k Kernel) bool {
	u, ok := k.(Unchanging)
	return ok && u.Unchanged()
}
