package dataplane

import (
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Fake is the node agent's kernel in memory: Sync, Apply and RetireUnused
// render entries with package render and plan the table's Transactions
// with the very planners a Dataplane uses, then run them on chains, rules
// and elements held in maps instead of sending them to the kernel (a
// planner's mistake shows in a test of the Fake as in the kernel). Dump
// prints the table as Format prints Inspect's answer, so a test compares
// whole kernel states, and needs no root.
//
// A Fake fails as a kernel can, when told to (FailSyncs, FailApply,
// FailRetire, Refuse), and as a kernel would: an Apply whose change does
// not start from the value the kernel holds, or a transaction that deletes
// an element the table lacks (ENOENT) or adds one it holds with another
// value (EEXIST), fails and changes nothing. It is safe for concurrent
// use.
type Fake struct {
	mu    sync.Mutex
	opts  render.Options
	table *nftables.Table
	sets  map[string]*nftables.Set
	kt    *kernelTable // nil: no table
	programmed
	held map[string]*doormanv1.Entry // the values programmed, by key
	// foreign: someone else changed the table since the last own commit.
	foreign bool

	syncErr   error
	syncFails int
	applyErr  error
	retireErr error
	refuse    map[uint64]bool
	leftOut   map[string]error

	calls     []string
	lastApply []Change
}

// NewFake returns a Fake holding no table, whose static chains follow
// opts.Render (NetNSPath is not used).
func NewFake(opts Options) *Fake {
	f := &Fake{opts: opts.Render, table: &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet},
		sets: map[string]*nftables.Set{}, refuse: map[uint64]bool{}}
	for _, s := range render.Sets() {
		f.sets[s.Name] = nftSet(f.table, s)
	}
	return f
}

// FailSyncs makes the next n Syncs (at least one) return err (nil:
// none). With an *InvalidEntriesError the Sync commits, as a Sync that
// left entries out does, and returns it.
func (f *Fake) FailSyncs(err error, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncErr, f.syncFails = err, max(n, 1)
}

// FailApply makes the next Apply return err (nil: none), changing
// nothing.
func (f *Fake) FailApply(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyErr = err
}

// FailRetire makes every RetireUnused return err (nil: none) besides the
// chains it retires.
func (f *Fake) FailRetire(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retireErr = err
}

// Refuse makes the kernel refuse entries whose digest is one of digests,
// as it refuses an element it cannot hold: a Sync or an Apply carrying one
// fails with EEXIST and changes nothing.
func (f *Fake) Refuse(digests ...uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range digests {
		f.refuse[d] = true
	}
}

// LeaveOut adds entries to what each later Sync and Apply report as not
// programmed (nil: none), besides those the renderer leaves out.
func (f *Fake) LeaveOut(entries map[string]error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leftOut = maps.Clone(entries)
}

// FlushChain deletes a chain's rules as someone else would (`nft flush
// chain inet doorman NAME`): the next Sync repairs it, and Unchanged
// reports false until then.
func (f *Fake) FlushChain(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kt != nil && f.kt.chains[name] != nil {
		f.kt.rules[name] = nil
	}
	f.foreign = true
}

// Calls lists the calls made, in order: "sync", "apply", "retire".
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// ResetCalls forgets the calls made so far.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.lastApply = nil, nil
}

// Count is how many calls of one kind ("sync", "apply", "retire") were
// made since the last ResetCalls.
func (f *Fake) Count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

// LastApply is the changes the last Apply was given.
func (f *Fake) LastApply() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastApply
}

// Entries is the view the table was last programmed with, by key.
func (f *Fake) Entries() map[string]*doormanv1.Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.held)
}

// Dump prints the table as Format prints Inspect's answer with elements.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Format(describe(f.kt, true))
}

// Unchanged reports whether nobody else changed the table since the
// Fake's own last commit (see FlushChain).
func (f *Fake) Unchanged() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.synced && !f.foreign
}

// refused returns the error of the first entry (by key) the kernel
// refuses, nil when there is none.
func (f *Fake) refused(entries map[string]*doormanv1.Entry) error {
	keys := make([]string, 0, len(entries))
	for k, e := range entries {
		if e != nil && f.refuse[e.GetDigest()] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	return fmt.Errorf("entry %q: %w", keys[0], syscall.EEXIST)
}

// Sync makes the table hold exactly the view, as Dataplane.Sync does.
func (f *Fake) Sync(view map[string]*doormanv1.Entry) (Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "sync")
	f.synced = false
	injected := f.syncErr
	if f.syncFails--; f.syncFails <= 0 {
		f.syncErr = nil
	}
	var partial *InvalidEntriesError
	if injected != nil && !errors.As(injected, &partial) {
		return Stats{}, injected
	}
	if err := f.refused(view); err != nil {
		return Stats{}, err
	}
	want := f.opts.View(view)
	plan := planSync(f.kt, want)
	if err := f.run(plan.tx); err != nil {
		return Stats{}, fmt.Errorf("sync: commit %d ops: %w", plan.tx.objects(), err)
	}
	ops := plan.tx.objects()
	for _, del := range plan.foreign {
		if f.run(del.tx) == nil {
			ops++
		}
	}
	f.commitSync(want, plan)
	f.foreign = false
	f.held = maps.Clone(view)
	stats := Stats{Ops: ops, Read: ReadNoRecord, NotProgrammed: f.reported()}
	if partial != nil {
		stats.NotProgrammed = mergeErrors(stats.NotProgrammed, partial.Entries)
	}
	if len(stats.NotProgrammed) > 0 {
		return stats, &InvalidEntriesError{Entries: stats.NotProgrammed}
	}
	return stats, nil
}

// Apply moves the table through changes as Dataplane.Apply does, with the
// same plan; on error nothing changed.
func (f *Fake) Apply(changes []Change) (Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "apply")
	f.lastApply = changes
	if err := f.applyErr; err != nil {
		f.applyErr = nil
		return Stats{}, err
	}
	if !f.synced {
		return Stats{}, ErrNotSynced
	}
	news := map[string]*doormanv1.Entry{}
	for _, c := range changes {
		if held := f.held[c.Key]; !proto.Equal(held, c.Old) {
			return Stats{}, fmt.Errorf("apply: change %q: kernel holds another value", c.Key)
		}
		news[c.Key] = c.New
	}
	if err := f.refused(news); err != nil {
		return Stats{}, err
	}
	ap, err := f.planApply(changes)
	if err != nil {
		return Stats{}, fmt.Errorf("apply: %w", err)
	}
	if err := f.run(ap.tx); err != nil {
		return Stats{}, fmt.Errorf("apply %d changes: %w", len(changes), err)
	}
	f.commitApply(ap)
	if f.held == nil {
		f.held = map[string]*doormanv1.Entry{}
	}
	for _, c := range changes {
		if c.New == nil {
			delete(f.held, c.Key)
		} else {
			f.held[c.Key] = c.New
		}
	}
	f.foreign = false
	return Stats{Ops: ap.tx.objects(), NotProgrammed: f.reported()}, nil
}

// RetireUnused deletes the per-K chains no programmed entry uses, as
// Dataplane.RetireUnused does (no chain is ever busy here).
func (f *Fake) RetireUnused() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "retire")
	if !f.synced {
		return 0, f.retireErr
	}
	deleted := 0
	for _, del := range f.planRetire() {
		if err := f.run(del.tx); err == nil || isENOENT(err) {
			delete(f.chains, del.chain)
			if err == nil {
				deleted++
			}
		}
	}
	return deleted, f.retireErr
}

// reported is what the table leaves out plus what LeaveOut added.
func (f *Fake) reported() map[string]error {
	return mergeErrors(f.notProgrammed(), f.leftOut)
}

func mergeErrors(a, b map[string]error) map[string]error {
	if len(b) == 0 {
		return a
	}
	out := maps.Clone(a)
	if out == nil {
		out = map[string]error{}
	}
	maps.Copy(out, b)
	return out
}
