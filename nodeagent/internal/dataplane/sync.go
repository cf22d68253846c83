package dataplane

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// kernelTable is doorman's table as read from the kernel.
type kernelTable struct {
	chains   map[string]*nftables.Chain
	rules    map[string][]*nftables.Rule
	sets     map[string]*nftables.Set
	elements map[string]map[string]render.Element // set → element ID → element
	// skeletonOnly: the elements were not read, the kernel is known to
	// hold those of the view (ReadSkipped).
	skeletonOnly bool
}

// read reads doorman's table once: chains with their rules, sets with their
// elements. It returns nil when the table does not exist.
// Elements of dynamic sets (the kernel's session affinity memory) are read
// only with withDynamic: they are not doorman's to compare.
func (d *Dataplane) read(withElements, withDynamic bool) (*kernelTable, error) {
	tables, err := d.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	found := false
	for _, t := range tables {
		if t.Name == render.TableName {
			found = true
		}
	}
	if !found {
		return nil, nil
	}
	kt := &kernelTable{
		chains:       map[string]*nftables.Chain{},
		rules:        map[string][]*nftables.Rule{},
		sets:         map[string]*nftables.Set{},
		elements:     map[string]map[string]render.Element{},
		skeletonOnly: !withElements,
	}
	chains, err := d.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table == nil || c.Table.Name != render.TableName {
			continue
		}
		kt.chains[c.Name] = c
		rules, err := d.conn.GetRules(d.table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of chain %s: %w", c.Name, err)
		}
		kt.rules[c.Name] = rules
	}
	sets, err := d.conn.GetSets(d.table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		kt.sets[s.Name] = s
		want, known := render.SetByName(s.Name)
		if !withElements || !known || (want.Dynamic && !withDynamic) {
			continue
		}
		raw, err := d.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of %s: %w", s.Name, err)
		}
		m := make(map[string]render.Element, len(raw))
		for _, r := range raw {
			e, err := elementFromKernel(want, r)
			if err != nil {
				return nil, err
			}
			m[e.ID()] = e
		}
		kt.elements[s.Name] = m
	}
	return kt, nil
}

// freeAfterSyncEntries is the view size from which Sync returns the freed
// heap to the OS after it is done. A Sync reads the whole table back and
// commits one transaction holding every message; both are garbage once
// the transaction is committed, but the Go runtime would keep their pages
// for minutes: at 10,000 Services they are about 40 MiB, more than the
// agent's steady state. Syncs are rare (start-up, resync, after a failed
// Apply), so the extra collection is cheap.
const freeAfterSyncEntries = 1000

// freeDelay is how long after a large Sync the heap is returned to the OS.
// The forced collection stops the process and takes a good part of a
// second's CPU at 100,000 Services: run at once it would delay what comes
// right after a start-up Sync (the first update, connecting to the control
// plane); a Sync that follows within the delay pushes it back.
const freeDelay = 3 * time.Second

// freeLater returns the freed heap to the OS freeDelay from now, once.
// Called with d.mu held.
func (d *Dataplane) freeLater() {
	if d.free == nil {
		d.free = time.AfterFunc(freeDelay, debug.FreeOSMemory)
		return
	}
	d.free.Reset(freeDelay)
}

// Sync makes doorman's table hold exactly the view (the Node entry plus
// every ServicePort entry). It reads the table once, compares, and changes
// only what differs, in one transaction; a table that is right is not
// touched (0 ops). While the kernel is still at the generation of the
// dataplane's last own commit (or of the Mark given by Trust), with the
// same table, and the view renders to the elements that commit left, the
// elements are not read back: only the skeleton (chains, rules, sets) is
// read and compared. Stats.Read says which it did and why. Per-K chains
// no view entry uses any more are kept (and their rules repaired like any
// other chain's): Sync never retires chains, so a restart after an
// endpoint-count change leaves the kernel as it is. RetireUnused deletes
// them. Chains that are neither the layout's nor
// per-K chains are deleted afterwards, best-effort, one transaction each.
//
// Entries that cannot be rendered are left out, and entries claiming a
// frontend another entry owns are programmed without it; both are
// reported with an *InvalidEntriesError after every other entry was
// programmed.
func (d *Dataplane) Sync(view map[string]*doormanv1.Entry) (Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(view) >= freeAfterSyncEntries {
		defer d.freeLater()
	}
	d.synced = false
	var steps SyncSteps
	t := time.Now()
	lap := func(into *time.Duration) {
		now := time.Now()
		*into, t = now.Sub(t), now
	}
	want, record, check := d.renderForRead(view)
	lap(&steps.Render)
	kt, err := d.read(check != ReadSkipped, false)
	if err != nil {
		return Stats{}, fmt.Errorf("sync: %w", err)
	}
	d.known = record
	lap(&steps.Read)
	plan := planSync(kt, want)
	if plan.rebuild != "" && want.Elements == nil {
		// The table is written anew, every element with it: a summary
		// (see renderForRead) has none to write.
		want = d.opts.View(view)
		plan = planSync(kt, want)
	}
	lap(&steps.Plan)
	d.lastRun = SyncSteps{}
	if plan.rebuild != "" {
		d.log.Info("rebuilding table", "reason", plan.rebuild)
	}
	for _, name := range plan.repaired {
		d.log.Info("repairing chain", "chain", name)
	}
	if err := d.run(plan.tx); err != nil {
		return Stats{}, fmt.Errorf("sync: commit %d ops: %w", plan.tx.objects(), err)
	}
	steps.Encode, steps.Commit = d.lastRun.Encode, d.lastRun.Commit
	stats := Stats{Ops: plan.tx.objects(), Read: check, Steps: steps}
	stats.Ops += d.deleteForeignChains(plan.foreign)
	d.settle()
	d.commitSync(want, plan)
	stats.NotProgrammed = d.notProgrammed()
	d.log.Debug("synced", "entries", len(view), "ops", stats.Ops, "read", check, "invalid", len(want.Invalid), "refused", len(want.Refused),
		"render", steps.Render, "read_back", steps.Read, "plan", steps.Plan, "encode", steps.Encode, "commit", steps.Commit)
	if len(stats.NotProgrammed) > 0 {
		return stats, &InvalidEntriesError{Entries: stats.NotProgrammed}
	}
	return stats, nil
}

// renderForRead renders the view for Sync and decides whether Sync must
// read the table's elements back (see checkGeneration and checkView). It
// consumes the Mark given by Trust and returns the Mark to start d.known
// afresh with once the table is read: the generation before the read
// (zero when it cannot be read) and the view's elements' digest; the
// commit that follows keeps it only if nobody committed in between. While
// the kernel may still hold the view (the generation is the recorded
// one), the view is only summarized (render.Summary): a start-up or
// resync that skips the read needs the elements' digest, not the
// elements. Otherwise (or when the summary is refused, or shows the read
// is needed after all) it renders the whole view; Sync does too when the
// table must be rebuilt.
func (d *Dataplane) renderForRead(view map[string]*doormanv1.Entry) (*render.Table, Mark, ReadCheck) {
	record := d.known
	if record.IsZero() {
		record = d.trusted
	}
	d.known, d.trusted = Mark{}, Mark{}
	start, genErr := d.generation()
	if genErr != nil {
		d.log.Warn("cannot read nftables generation", "error", genErr)
	}
	known := func(digest uint64) Mark {
		if genErr != nil {
			return Mark{}
		}
		return Mark{Generation: start, Elements: digest}
	}
	check := d.checkGeneration(record, start, genErr)
	if check == ReadSkipped {
		if want, digest, ok := d.opts.Summary(view, elementHash); ok {
			if check = d.checkView(record, digest); check == ReadSkipped {
				return want, known(digest), check
			}
		}
	}
	want := d.opts.View(view)
	digest := elementsDigest(want.Elements)
	if check == ReadSkipped {
		// The summary was refused (a contested frontend).
		check = d.checkView(record, digest)
	}
	return want, known(digest), check
}

// deleteForeignChains deletes chains in doorman's table that are neither
// the layout's nor per-K chains (left by someone else or by an older
// layout), one transaction each so that a busy one does not hold back the
// others. It returns how many it deleted.
func (d *Dataplane) deleteForeignChains(foreign []chainDeletion) int {
	deleted := 0
	for _, del := range foreign {
		if d.deleteChain(del) == nil {
			deleted++
		}
	}
	return deleted
}

// deleteChain runs one chain's deletion.
func (d *Dataplane) deleteChain(del chainDeletion) error {
	err := d.run(del.tx)
	switch {
	case err == nil:
	case isEBUSY(err):
		d.log.Debug("chain still in use, kept for later", "chain", del.chain)
	default:
		d.log.Warn("cannot delete chain", "chain", del.chain, "error", err)
	}
	return err
}

// RetireUnused deletes the per-K chains no programmed entry uses any more
// (Apply and Sync keep them, cheap, so that a restart or a Service whose
// endpoint count comes back changes nothing). Each goes in its own
// transaction; one still busy (EBUSY, shortly after its last reference
// went) stays for the next call. It returns how many chains it deleted;
// the error joins the failures other than EBUSY. Before a Sync it does
// nothing.
func (d *Dataplane) RetireUnused() (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.synced {
		return 0, nil
	}
	deleted := 0
	var errs []error
	for _, del := range d.planRetire() {
		err := d.deleteChain(del)
		switch {
		case err == nil || isENOENT(err):
			// ENOENT: someone else deleted it already.
			delete(d.chains, del.chain)
			if err == nil {
				deleted++
			}
		case !isEBUSY(err):
			errs = append(errs, fmt.Errorf("retire chain %s: %w", del.chain, err))
		}
	}
	if deleted > 0 {
		d.log.Debug("retired unused chains", "chains", deleted)
	}
	return deleted, errors.Join(errs...)
}
