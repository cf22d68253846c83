package dataplane

import (
	"fmt"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// run sends tx to the kernel as one netlink batch, committed atomically:
// on error nothing changed. It is the only method that changes the
// kernel's table besides Remove. An invalid transaction is refused before
// anything is queued; an empty one sends nothing. Called with d.mu held.
func (d *Dataplane) run(tx Transaction) error {
	if err := tx.validate(); err != nil {
		return fmt.Errorf("invalid transaction: %w", err)
	}
	if tx.objects() == 0 {
		return nil
	}
	if d.log.IsTrace() {
		d.log.Trace("running transaction", "nft", tx.String())
	}
	start := time.Now()
	for i := range tx.ops {
		if err := d.queue(&tx.ops[i]); err != nil {
			return err
		}
	}
	queued := time.Now()
	err := d.commit()
	d.lastRun = SyncSteps{Encode: queued.Sub(start), Commit: time.Since(queued)}
	return err
}

// queue turns one operation into google/nftables messages.
func (d *Dataplane) queue(o *op) error {
	chain := &nftables.Chain{Table: d.table, Name: o.chain.Name}
	switch o.kind {
	case opDeleteTable:
		d.conn.DelTable(d.table)
	case opAddTable:
		d.conn.AddTable(d.table)
	case opAddSet:
		if err := d.conn.AddSet(d.sets[o.set.Name], nil); err != nil {
			return fmt.Errorf("add set %s: %w", o.set.Name, err)
		}
	case opAddChain:
		d.conn.AddChain(nftChain(d.table, o.chain))
	case opFlushChain:
		d.conn.FlushChain(chain)
	case opAddRules:
		for _, r := range o.chain.Rules {
			d.conn.AddRule(nftRule(d.table, chain, r))
		}
	case opDeleteElements, opAddElements:
		return d.queueElements(o.elements, o.kind == opDeleteElements)
	case opDeleteChain:
		d.conn.DelChain(chain)
	}
	return nil
}

// nftRule is a rule as the kernel holds it: its expressions, and its nft
// text as the comment by which Sync recognises it.
func nftRule(table *nftables.Table, chain *nftables.Chain, r render.Rule) *nftables.Rule {
	return &nftables.Rule{Table: table, Chain: chain, Exprs: r.Exprs, UserData: ruleComment(r)}
}

// queueElements queues element adds (or deletes) grouped by set, each
// message below maxElementBytes. Grouping keeps indices, not copies: a
// full Sync passes hundreds of thousands of elements.
func (d *Dataplane) queueElements(es []render.Element, del bool) error {
	bySet := map[string][]int32{}
	var order []string
	for i := range es {
		name := es[i].Set
		list, ok := bySet[name]
		if !ok {
			order = append(order, name)
		}
		bySet[name] = append(list, int32(i))
	}
	var chunk []nftables.SetElement
	for _, name := range order {
		set, ok := d.sets[name]
		if !ok {
			return fmt.Errorf("element of unknown set %q", name)
		}
		list := bySet[name]
		for len(list) > 0 {
			n, size := 0, 0
			for n < len(list) && size+elementSize(es[list[n]]) <= maxElementBytes {
				size += elementSize(es[list[n]])
				n++
			}
			// The library keeps no reference to the slice after queueing.
			chunk = chunk[:0]
			for _, i := range list[:n] {
				chunk = append(chunk, toSetElement(es[i]))
			}
			var err error
			if del {
				err = d.conn.SetDeleteElements(set, chunk)
			} else {
				err = d.conn.SetAddElements(set, chunk)
			}
			if err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
			list = list[n:]
		}
	}
	return nil
}
