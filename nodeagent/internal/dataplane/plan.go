package dataplane

import (
	"slices"
	"sort"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// The planners: each takes what the kernel holds (as read back, or as the
// programmed bookkeeping has it) and what it should hold, and returns the
// Transactions that take it there. They touch neither the kernel nor the
// bookkeeping; Dataplane and Fake run the same plans.

// syncPlan is what one Sync sends: one transaction, then each foreign
// chain's deletion in a transaction of its own.
type syncPlan struct {
	tx Transaction
	// rebuild says why the table is replaced whole; "" when it is not.
	rebuild string
	// repaired lists the chains whose rules are flushed and written anew.
	repaired []string
	// foreign: chains that are neither the layout's nor per-K chains, to
	// delete after tx, best-effort.
	foreign []chainDeletion
	// chains: the per-K chains the table holds after tx.
	chains map[string]bool
}

// chainDeletion deletes one chain in a transaction of its own, so that a
// chain still in use (EBUSY) does not hold back the others.
type chainDeletion struct {
	chain string
	tx    Transaction
}

func deletion(name string) chainDeletion {
	d := chainDeletion{chain: name}
	d.tx.deleteChain(name)
	return d
}

// planSync plans the Sync from kt (nil: no table) to want. A table whose
// skeleton has another shape is deleted and created afresh in the same
// transaction; missing sets and chains are added, chains whose rules
// differ are flushed and refilled (per-K chains no entry uses included:
// an Apply may use them again), and the elements are diffed unless kt
// was read without them (the kernel is known to hold want's).
func planSync(kt *kernelTable, want *render.Table) *syncPlan {
	p := &syncPlan{chains: map[string]bool{}}
	if kt != nil {
		if rebuild, why := needsRebuild(kt, want); rebuild {
			p.rebuild = why
			p.tx.deleteTable()
			kt = nil
		}
	}
	if kt == nil {
		p.tx.addTable()
		kt = &kernelTable{}
	}
	for _, s := range want.Sets {
		if _, ok := kt.sets[s.Name]; !ok {
			p.tx.addSet(s)
		}
	}
	p.planChains(kt, want)
	if !kt.skeletonOnly {
		dels, adds := diffElements(kt, want)
		p.tx.deleteElements(dels)
		p.tx.addElements(adds)
	}
	for name := range kt.chains {
		if _, ok := render.EndpointChain(name); ok {
			p.chains[name] = true
		}
	}
	return p
}

// planChains creates the missing chains first (rules and elements refer
// to them), flushes those whose rules differ, then fills both; it notes
// the foreign chains and the per-K chains want uses.
func (p *syncPlan) planChains(kt *kernelTable, want *render.Table) {
	wanted := make(map[string]bool, len(want.Chains))
	var fill []render.Chain
	for _, c := range want.Chains {
		wanted[c.Name] = true
		if _, ok := render.EndpointChain(c.Name); ok {
			p.chains[c.Name] = true
		}
		if _, ok := kt.chains[c.Name]; !ok {
			p.tx.addChain(c)
			fill = append(fill, c)
		} else if !rulesMatch(kt.rules[c.Name], c.Rules) {
			p.tx.flushChain(c.Name)
			p.repaired = append(p.repaired, c.Name)
			fill = append(fill, c)
		}
	}
	others := make([]string, 0, len(kt.chains))
	for name := range kt.chains {
		if !wanted[name] {
			others = append(others, name)
		}
	}
	sort.Strings(others)
	for _, name := range others {
		c, ok := render.EndpointChain(name)
		switch {
		case !ok:
			p.foreign = append(p.foreign, deletion(name))
		case !rulesMatch(kt.rules[name], c.Rules):
			p.tx.flushChain(name)
			p.repaired = append(p.repaired, name)
			fill = append(fill, c)
		}
	}
	for _, c := range fill {
		p.tx.addRules(c)
	}
}

// needsRebuild reports whether the table's skeleton is of another shape
// than the layout (a set or base chain of another type, or a set the layout
// does not have): such a table is replaced whole, in the same transaction.
func needsRebuild(kt *kernelTable, want *render.Table) (bool, string) {
	wantSets := map[string]bool{}
	for _, s := range want.Sets {
		wantSets[s.Name] = true
		if k, ok := kt.sets[s.Name]; ok && !setShapeMatches(k, s) {
			return true, "set " + s.Name + " has another type"
		}
	}
	for name := range kt.sets {
		if !wantSets[name] {
			return true, "unknown set " + name
		}
	}
	for _, c := range want.Chains {
		if k, ok := kt.chains[c.Name]; ok && !chainHookMatches(k, c) {
			return true, "chain " + c.Name + " has another hook"
		}
	}
	return false, ""
}

// diffElements returns the elements to delete from the kernel (those the
// view lacks or maps elsewhere) and to add. A kernel without elements
// gets want's own slice, not a copy.
func diffElements(kt *kernelTable, want *render.Table) (dels, adds []render.Element) {
	kernelElements := 0
	for _, m := range kt.elements {
		kernelElements += len(m)
	}
	if kernelElements == 0 {
		return nil, want.Elements
	}
	wantIDs := make(map[string]bool, len(want.Elements))
	for _, e := range want.Elements {
		id := e.ID()
		wantIDs[id] = true
		k, ok := kt.elements[e.Set][id]
		if ok && k.SameValue(e) {
			continue
		}
		if ok {
			dels = append(dels, k)
		}
		adds = append(adds, e)
	}
	for _, s := range want.Sets {
		for id, k := range kt.elements[s.Name] {
			if !wantIDs[id] {
				dels = append(dels, k)
			}
		}
	}
	render.SortElements(dels)
	return dels, adds
}

// planRetire lists the per-K chains no programmed entry uses, by name,
// each to delete in its own transaction.
func (p *programmed) planRetire() []chainDeletion {
	var unused []string
	for name := range p.chains {
		if p.chainUsers[name] == 0 {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	dels := make([]chainDeletion, len(unused))
	for i, name := range unused {
		dels[i] = deletion(name)
	}
	return dels
}

// applyPlan is what one Apply sends to the kernel (new per-K chains, then
// element deletes and adds) and the bookkeeping it commits afterwards.
type applyPlan struct {
	tx         Transaction
	changes    []Change
	plan       *render.Plan
	newChains  []string // per-K chains to add, in order
	dels, adds []render.Element
	delta      map[render.SharedID]int // owner count changes of shared elements
	users      map[string]int          // chainUsers changes
}

// planApply works out, without changing anything, what moving the table
// through changes takes.
func (p *programmed) planApply(changes []Change) (*applyPlan, error) {
	planned, cloned := changes, false
	for i, c := range changes {
		if _, bad := p.invalid[c.Key]; bad && c.Old != nil {
			if !cloned {
				planned, cloned = slices.Clone(changes), true
			}
			planned[i].Old = nil // Sync left it out: it owns nothing
		}
	}
	plan, err := p.claims.Plan(planned)
	if err != nil {
		return nil, err
	}
	ap := &applyPlan{changes: changes, plan: plan, delta: map[render.SharedID]int{}, users: map[string]int{}}
	newChains := map[string]bool{}
	for _, m := range plan.Moves {
		del, add := render.Diff(m.Old, m.New)
		ap.shared(p, del, true)
		ap.shared(p, add, false)
		for _, name := range m.New.Chains {
			if !p.chains[name] && !newChains[name] {
				newChains[name] = true
				ap.newChains = append(ap.newChains, name)
			}
			ap.users[name]++
		}
		for _, name := range m.Old.Chains {
			ap.users[name]--
		}
	}
	for _, name := range ap.newChains {
		c, _ := render.EndpointChain(name)
		ap.tx.addChain(c)
		ap.tx.addRules(c)
	}
	ap.tx.deleteElements(ap.dels)
	ap.tx.addElements(ap.adds)
	return ap, nil
}

// shared queues one move's element deletes (or adds): a shared element
// goes with its last owner and comes with its first.
func (ap *applyPlan) shared(p *programmed, es []render.Element, del bool) {
	for _, e := range es {
		if !e.Shared {
			ap.queue(e, del)
			continue
		}
		id := e.SharedID()
		n := p.owners[id] + ap.delta[id]
		if del {
			if n == 1 {
				ap.queue(e, del)
			}
			ap.delta[id]--
			continue
		}
		if n == 0 {
			ap.queue(e, del)
		}
		ap.delta[id]++
	}
}

func (ap *applyPlan) queue(e render.Element, del bool) {
	if del {
		ap.dels = append(ap.dels, e)
	} else {
		ap.adds = append(ap.adds, e)
	}
}
