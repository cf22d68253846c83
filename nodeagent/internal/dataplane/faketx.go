package dataplane

import (
	"fmt"
	"syscall"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// run applies tx to the table the Fake holds, all or nothing, failing as
// the kernel fails a transaction: an invalid operation, an operation on a
// table, set or chain that is not there, or the delete of an element the
// set lacks (ENOENT), the add of one it holds with another value
// (EEXIST). Adding a table, set or chain that exists changes nothing, as
// in the kernel. No chain is ever busy here.
func (f *Fake) run(tx Transaction) error {
	if err := tx.validate(); err != nil {
		return fmt.Errorf("invalid transaction: %w", err)
	}
	if err := newTxCheck(f.kt).check(tx); err != nil {
		return err
	}
	for i := range tx.ops {
		f.applyOp(&tx.ops[i])
	}
	return nil
}

// applyOp changes the held table by one operation that check accepted.
func (f *Fake) applyOp(o *op) {
	name := o.chain.Name
	switch o.kind {
	case opDeleteTable:
		f.kt = nil
	case opAddTable:
		if f.kt == nil {
			f.kt = &kernelTable{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{},
				sets: map[string]*nftables.Set{}, elements: map[string]map[string]render.Element{}}
		}
	case opAddSet:
		f.kt.sets[o.set.Name] = f.sets[o.set.Name]
	case opAddChain:
		if f.kt.chains[name] == nil {
			f.kt.chains[name] = nftChain(f.table, o.chain)
		}
	case opFlushChain:
		f.kt.rules[name] = nil
	case opAddRules:
		nc := f.kt.chains[name]
		for _, r := range o.chain.Rules {
			f.kt.rules[name] = append(f.kt.rules[name], nftRule(f.table, nc, r))
		}
	case opDeleteElements:
		for _, e := range o.elements {
			delete(f.kt.elements[e.Set], e.ID())
		}
	case opAddElements:
		f.addElements(o.elements)
	case opDeleteChain:
		delete(f.kt.chains, name)
		delete(f.kt.rules, name)
	}
}

func (f *Fake) addElements(es []render.Element) {
	for _, e := range es {
		m := f.kt.elements[e.Set]
		if m == nil {
			m = map[string]render.Element{}
			f.kt.elements[e.Set] = m
		}
		m[e.ID()] = e
	}
}

// txCheck follows a transaction over a held table without changing it:
// what the operations so far added or deleted, over what the table held.
type txCheck struct {
	kt *kernelTable // nil, or deleted by the transaction: nothing held counts
	// table: the table exists at this point of the transaction.
	table    bool
	sets     map[string]bool
	chains   map[string]bool
	elements map[string]*render.Element // by ID; nil: deleted
}

func newTxCheck(kt *kernelTable) *txCheck {
	return &txCheck{kt: kt, table: kt != nil, sets: map[string]bool{}, chains: map[string]bool{}, elements: map[string]*render.Element{}}
}

// check returns the error the kernel would answer tx with, nil if none.
func (c *txCheck) check(tx Transaction) error {
	for i := range tx.ops {
		o := &tx.ops[i]
		if o.kind == opAddTable {
			c.table = true
			continue
		}
		if !c.table {
			return fmt.Errorf("table %s %s: %w", render.TableFamily, render.TableName, syscall.ENOENT)
		}
		if err := c.checkOp(o); err != nil {
			return err
		}
	}
	return nil
}

func (c *txCheck) checkOp(o *op) error {
	name := o.chain.Name
	switch o.kind {
	case opDeleteTable:
		*c = txCheck{sets: map[string]bool{}, chains: map[string]bool{}, elements: map[string]*render.Element{}}
	case opAddSet:
		c.sets[o.set.Name] = true
	case opAddChain:
		c.chains[name] = true
	case opFlushChain, opAddRules, opDeleteChain:
		if !c.hasChain(name) {
			return fmt.Errorf("chain %s: %w", name, syscall.ENOENT)
		}
		if o.kind == opDeleteChain {
			c.chains[name] = false
		}
	case opDeleteElements:
		return c.deleteElements(o.elements)
	case opAddElements:
		return c.addElements(o.elements)
	}
	return nil
}

func (c *txCheck) deleteElements(es []render.Element) error {
	for i := range es {
		e := &es[i]
		if !c.hasSet(e.Set) {
			return fmt.Errorf("set %s: %w", e.Set, syscall.ENOENT)
		}
		id := e.ID()
		if c.element(e.Set, id) == nil {
			return fmt.Errorf("set %s: delete %s: %w", e.Set, render.FormatElement(*e), syscall.ENOENT)
		}
		c.elements[id] = nil
	}
	return nil
}

func (c *txCheck) addElements(es []render.Element) error {
	for i := range es {
		e := &es[i]
		if !c.hasSet(e.Set) {
			return fmt.Errorf("set %s: %w", e.Set, syscall.ENOENT)
		}
		id := e.ID()
		if k := c.element(e.Set, id); k != nil && !k.SameValue(*e) {
			return fmt.Errorf("set %s: add %s: %w", e.Set, render.FormatElement(*e), syscall.EEXIST)
		}
		c.elements[id] = e
	}
	return nil
}

func (c *txCheck) hasSet(name string) bool {
	if v, ok := c.sets[name]; ok {
		return v
	}
	return c.kt != nil && c.kt.sets[name] != nil
}

func (c *txCheck) hasChain(name string) bool {
	if v, ok := c.chains[name]; ok {
		return v
	}
	return c.kt != nil && c.kt.chains[name] != nil
}

// element is the element of that ID at this point, nil when there is none.
func (c *txCheck) element(set, id string) *render.Element {
	if e, ok := c.elements[id]; ok {
		return e
	}
	if c.kt == nil {
		return nil
	}
	if e, ok := c.kt.elements[set][id]; ok {
		return &e
	}
	return nil
}
