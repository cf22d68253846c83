package agent

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// rejection is a value of one key that the kernel refused (a transaction
// holding only that key's change failed). The key stays in the view with
// that value, but the kernel keeps what it held before: Apply and Sync are
// given kernel instead, so one bad Service holds back neither the others
// nor later updates. A later update that brings the same value again
// skips the kernel (no retry loop); another value is tried.
//
// A value that fails doormanv1.ValidateEntry (invalid) takes the same path
// without being tried: it never reaches the renderer or the kernel.
type rejection struct {
	value   *doormanv1.Entry // the refused value; nil: the key's removal
	kernel  *doormanv1.Entry // what the kernel holds for the key; nil: nothing
	reason  string
	invalid bool // the value failed validation, not the kernel
}

// why is how Status and errors describe the rejection.
func (r rejection) why() string {
	if r.invalid {
		return fmt.Sprintf("invalid value %016x: %s", r.digest(), r.reason)
	}
	return fmt.Sprintf("refused by the kernel (value %016x): %s", r.digest(), r.reason)
}

func (r rejection) digest() uint64 { return r.value.GetDigest() }

// refused is one change the kernel refused, with the kernel's error.
type refused struct {
	change dataplane.Change
	err    error
}

// sameValue reports whether two values of a key are equal (by digest); nil
// is the key's absence.
func sameValue(x, y *doormanv1.Entry) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.GetDigest() == y.GetDigest()
}

// plan is what kernelChanges left out of the kernel changes.
type plan struct {
	// skipped: keys whose new value the kernel refused before.
	skipped []string
	// resolved: keys that came back to the value the kernel holds.
	resolved []string
}

// kernelChanges turns the view's changes into the kernel's: a key whose
// value the kernel refused moves from what the kernel holds for it, and is
// left out when the update brings the refused value again.
func (a *Agent) kernelChanges(changes []state.Change) ([]dataplane.Change, plan) {
	var p plan
	out := make([]dataplane.Change, 0, len(changes))
	for _, c := range changes {
		old := c.Old
		if r, ok := a.rejected[c.Key]; ok {
			old = r.kernel
			switch {
			case sameValue(c.New, r.value):
				p.skipped = append(p.skipped, c.Key)
				continue
			case sameValue(c.New, r.kernel):
				p.resolved = append(p.resolved, c.Key)
				continue
			}
		}
		out = append(out, dataplane.Change{Key: c.Key, Old: old, New: c.New})
	}
	return out, p
}

// kernelEntries is the view as the kernel is to hold it: the keys whose
// value the kernel refused keep what the kernel holds for them.
func (a *Agent) kernelEntries() map[string]*doormanv1.Entry {
	if len(a.rejected) == 0 {
		return a.view.Entries()
	}
	m := maps.Clone(a.view.Entries())
	for k, r := range a.rejected {
		if r.kernel == nil {
			delete(m, k)
		} else {
			m[k] = r.kernel
		}
	}
	return m
}

// programmed is what program did.
type programmed struct {
	// applied: the changes now in the kernel.
	applied []dataplane.Change
	// bad: the changes the kernel refused, by key.
	bad map[string]refused
	// warning: entries a Sync left out.
	warning error
	// synced: a full Sync committed.
	synced bool
}

// program moves the kernel by kc: one Apply (or a Sync when the kernel's
// content is unknown). When that fails, one full Sync, in case the kernel
// drifted. When that fails too, the kernel refuses part of the update: it
// is put back to what it held before the update (each failed transaction
// was atomic, so that Sync normally changes nothing) and the changes are
// tried in halves, down to single keys, to find those it refuses; the
// others are applied. All of this is on the failure path only: an update
// the kernel takes costs one Apply.
//
// An error means the kernel could not be brought to a known state; the
// next update programs the whole view.
func (a *Agent) program(out *Outcome, kc []dataplane.Change) (programmed, error) {
	var res programmed
	if !a.needSync {
		if len(kc) == 0 {
			return res, nil
		}
		stats, err := a.kernel.Apply(kc)
		out.Ops += stats.Ops
		if err == nil {
			res.applied = kc
			res.warning = a.leftOut(stats)
			return res, nil
		}
		out.ApplyErr = err
	}
	out.Synced = true
	target := overlay(a.kernelEntries(), kc, false)
	stats, warning, err := a.syncView(target)
	out.Ops += stats.Ops
	if err == nil {
		a.needSync = false
		res.applied, res.warning, res.synced = kc, warning, true
		return res, nil
	}
	firstErr := err
	if out.ApplyErr != nil {
		firstErr = fmt.Errorf("apply: %w; full sync: %w", out.ApplyErr, err)
	}

	// From the kernel as it was before the update.
	before := overlay(target, kc, true)
	stats, warning, err = a.syncView(before)
	out.Ops += stats.Ops
	if err != nil && len(before) == 0 {
		a.needSync = true
		return res, fmt.Errorf("program view: %w; empty table: %w", firstErr, err)
	}
	if err != nil {
		// The kernel refuses even that (a value restored from the cache,
		// say): start from an empty table and add every entry.
		kc = make([]dataplane.Change, 0, len(target))
		for _, k := range slices.Sorted(maps.Keys(target)) {
			kc = append(kc, dataplane.Change{Key: k, New: target[k]})
		}
		stats, warning, err = a.syncView(map[string]*doormanv1.Entry{})
		out.Ops += stats.Ops
		if err != nil {
			a.needSync = true
			return res, fmt.Errorf("program view: %w; empty table: %w", firstErr, err)
		}
	}
	a.needSync = false
	res.synced, res.warning = true, warning
	var last *dataplane.Stats
	res.applied, res.bad, last = a.isolate(out, kc)
	if last != nil {
		res.warning = a.leftOut(*last)
	}
	return res, nil
}

// leftOut records what the kernel leaves out after an Apply that
// committed: the dataplane lists every such entry (an Apply may also
// program an entry it was not given, whose frontend the changes freed, or
// leave out one whose frontend an entry of higher precedence took). It
// returns a warning when that list changed, nil when it is empty or as
// before: a conflict that lasts is in every Ack, not in every log line.
func (a *Agent) leftOut(stats dataplane.Stats) error {
	same := len(stats.NotProgrammed) == len(a.notProgrammed)
	for k, why := range stats.NotProgrammed {
		if same && a.notProgrammed[k] != why.Error() {
			same = false
		}
	}
	clear(a.notProgrammed)
	for k, why := range stats.NotProgrammed {
		a.notProgrammed[k] = why.Error()
	}
	if same || len(stats.NotProgrammed) == 0 {
		return nil
	}
	return &dataplane.InvalidEntriesError{Entries: stats.NotProgrammed}
}

// overlay returns a copy of view moved to each change's New (or, with old,
// its Old).
func overlay(view map[string]*doormanv1.Entry, kc []dataplane.Change, old bool) map[string]*doormanv1.Entry {
	if len(kc) == 0 {
		return view
	}
	m := maps.Clone(view)
	for _, c := range kc {
		e := c.New
		if old {
			e = c.Old
		}
		if e == nil {
			delete(m, c.Key)
		} else {
			m[c.Key] = e
		}
	}
	return m
}

// isolate applies the changes the kernel takes and returns those it
// refuses. It tries the whole set, then halves of a set that failed, down to
// single changes; each failed transaction left the kernel as it was. Changes
// that failed are tried again while the others made progress, since one
// change may need another first (a removal freeing an address the other
// takes). Removals go first for the same reason. last is the Stats of the
// last Apply that committed (nil: none did).
func (a *Agent) isolate(out *Outcome, kc []dataplane.Change) (applied []dataplane.Change, bad map[string]refused, last *dataplane.Stats) {
	pending := slices.Clone(kc)
	slices.SortStableFunc(pending, func(x, y dataplane.Change) int {
		return cmp.Compare(rank(x), rank(y))
	})
	for len(pending) > 0 {
		var failed []refused
		progress := false
		var try func(cs []dataplane.Change)
		try = func(cs []dataplane.Change) {
			stats, err := a.kernel.Apply(cs)
			out.Ops += stats.Ops
			switch {
			case err == nil:
				applied = append(applied, cs...)
				progress = true
				last = &stats
			case len(cs) == 1:
				failed = append(failed, refused{change: cs[0], err: err})
			default:
				try(cs[:len(cs)/2])
				try(cs[len(cs)/2:])
			}
		}
		try(pending)
		if len(failed) == 0 || !progress {
			if len(failed) > 0 {
				bad = make(map[string]refused, len(failed))
				for _, f := range failed {
					bad[f.change.Key] = f
				}
			}
			return applied, bad, last
		}
		pending = pending[:0]
		for _, f := range failed {
			pending = append(pending, f.change)
		}
	}
	return applied, nil, last
}

func rank(c dataplane.Change) int {
	if c.New == nil {
		return 0
	}
	return 1
}

// recordInvalid remembers the values of the changes that fail validation,
// so that kernelChanges leaves them out like a value the kernel refused:
// the kernel keeps what it holds for the key. It returns their keys.
func (a *Agent) recordInvalid(changes []state.Change, invalid map[string]error) map[string]bool {
	if len(invalid) == 0 {
		return nil
	}
	keys := make(map[string]bool, len(invalid))
	for _, c := range changes {
		why, bad := invalid[c.Key]
		if !bad || c.New == nil {
			continue
		}
		kernel := c.Old
		if r, ok := a.rejected[c.Key]; ok {
			kernel = r.kernel
		}
		a.rejected[c.Key] = rejection{value: c.New, kernel: kernel, reason: why.Error(), invalid: true}
		a.counters.Invalid++
		keys[c.Key] = true
	}
	return keys
}

// recordRejections remembers the values the kernel refused.
func (a *Agent) recordRejections(bad map[string]refused) {
	for k, r := range bad {
		a.rejected[k] = rejection{value: r.change.New, kernel: r.change.Old, reason: r.err.Error()}
		a.counters.Rejections++
	}
}

// notProgrammedKeys lists, sorted, the keys held whose value is not in the
// kernel: left out by Sync, or refused by the kernel.
func (a *Agent) notProgrammedKeys() []string {
	keys := slices.Collect(maps.Keys(a.notProgrammed))
	for k, r := range a.rejected {
		if _, dup := a.notProgrammed[k]; !dup && !sameValue(a.view.Get(k), r.kernel) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// RefusedError names the entries of an update whose values were refused:
// invalid (with the validator's error), or by the kernel now (with the
// kernel's error) or before (not tried again).
type RefusedError struct {
	Entries map[string]string
}

func (e *RefusedError) Error() string {
	keys := slices.Sorted(maps.Keys(e.Entries))
	msgs := make([]string, len(keys))
	for i, k := range keys {
		msgs[i] = fmt.Sprintf("%q: %s", k, e.Entries[k])
	}
	return fmt.Sprintf("refused %d entries: %s", len(keys), strings.Join(msgs, "; "))
}

// refusedError names bad (refused by the kernel now) and skipped (refused
// before; those in fresh failed validation in this update).
func refusedError(bad map[string]refused, skipped []string, fresh map[string]bool, rejected map[string]rejection) error {
	e := &RefusedError{Entries: make(map[string]string, len(bad)+len(skipped))}
	for k, r := range bad {
		e.Entries[k] = r.err.Error()
	}
	for _, k := range skipped {
		r := rejected[k]
		switch {
		case fresh[k]:
			e.Entries[k] = "invalid: " + r.reason
		case r.invalid:
			e.Entries[k] = fmt.Sprintf("value %016x invalid, not tried: %s", r.digest(), r.reason)
		default:
			e.Entries[k] = fmt.Sprintf("value %016x refused before, not tried again: %s", r.digest(), r.reason)
		}
	}
	return e
}
