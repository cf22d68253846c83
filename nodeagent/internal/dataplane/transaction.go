package dataplane

import (
	"errors"
	"fmt"
	"strings"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// opKind is what one operation of a Transaction does.
type opKind uint8

const (
	opDeleteTable opKind = iota
	opAddTable
	opAddSet
	opAddChain
	opFlushChain
	opAddRules
	opDeleteElements
	opAddElements
	opDeleteChain
)

// op is one operation of a Transaction; only the fields its kind needs
// are set.
type op struct {
	kind opKind
	// set: opAddSet.
	set render.Set
	// chain: its name for every chain operation, its hook for opAddChain,
	// the rules to append for opAddRules.
	chain render.Chain
	// elements: opAddElements and opDeleteElements, of any sets. The
	// planners' slices, never copied: a full Sync passes hundreds of
	// thousands of elements.
	elements []render.Element
}

// Transaction is one atomic change of doorman's table as plain data: an
// ordered list of operations on the table, its sets, chains, rules and
// elements. Sync, Apply and RetireUnused plan Transactions without
// touching the kernel; a Dataplane sends each in one netlink batch, the
// Fake applies it to the table it holds in memory. String prints it as
// the nft commands it stands for.
type Transaction struct {
	ops []op
}

func (tx *Transaction) deleteTable() { tx.ops = append(tx.ops, op{kind: opDeleteTable}) }

func (tx *Transaction) addTable() { tx.ops = append(tx.ops, op{kind: opAddTable}) }

func (tx *Transaction) addSet(s render.Set) { tx.ops = append(tx.ops, op{kind: opAddSet, set: s}) }

// addChain creates the chain (with its hook, if any), not its rules.
func (tx *Transaction) addChain(c render.Chain) {
	tx.ops = append(tx.ops, op{kind: opAddChain, chain: render.Chain{Name: c.Name, Hook: c.Hook}})
}

func (tx *Transaction) flushChain(name string) {
	tx.ops = append(tx.ops, op{kind: opFlushChain, chain: render.Chain{Name: name}})
}

// addRules appends c.Rules to the chain c.Name.
func (tx *Transaction) addRules(c render.Chain) {
	if len(c.Rules) > 0 {
		tx.ops = append(tx.ops, op{kind: opAddRules, chain: render.Chain{Name: c.Name, Rules: c.Rules}})
	}
}

func (tx *Transaction) deleteElements(es []render.Element) {
	if len(es) > 0 {
		tx.ops = append(tx.ops, op{kind: opDeleteElements, elements: es})
	}
}

func (tx *Transaction) addElements(es []render.Element) {
	if len(es) > 0 {
		tx.ops = append(tx.ops, op{kind: opAddElements, elements: es})
	}
}

func (tx *Transaction) deleteChain(name string) {
	tx.ops = append(tx.ops, op{kind: opDeleteChain, chain: render.Chain{Name: name}})
}

// objects counts the kernel objects the transaction adds, deletes or
// replaces (Stats.Ops): the table, a set, a chain or a chain flush count
// one each, rules and elements one per rule or element.
func (tx Transaction) objects() int {
	n := 0
	for i := range tx.ops {
		switch o := &tx.ops[i]; o.kind {
		case opAddRules:
			n += len(o.chain.Rules)
		case opAddElements, opDeleteElements:
			n += len(o.elements)
		default:
			n++
		}
	}
	return n
}

// validate checks that every operation is well formed: known sets, named
// chains with known hooks, rules with expressions, map elements with
// values and set elements without. It does not know the kernel: whether
// a chain or an element exists is the kernel's to say.
func (tx Transaction) validate() error {
	var errs []error
	for i := range tx.ops {
		if err := tx.ops[i].validate(); err != nil {
			errs = append(errs, fmt.Errorf("operation %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func (o *op) validate() error {
	switch o.kind {
	case opDeleteTable, opAddTable:
		return nil
	case opAddSet:
		if _, ok := render.SetByName(o.set.Name); !ok {
			return fmt.Errorf("add set: unknown set %q", o.set.Name)
		}
		return nil
	case opAddElements, opDeleteElements:
		return validateElements(o.elements, o.kind == opAddElements)
	case opAddChain, opFlushChain, opAddRules, opDeleteChain:
		return o.validateChain()
	}
	return fmt.Errorf("unknown operation %d", o.kind)
}

func (o *op) validateChain() error {
	if o.chain.Name == "" {
		return errors.New("chain without a name")
	}
	if h := o.chain.Hook; o.kind == opAddChain && h != nil && hooks[h.Hook] == nil {
		return fmt.Errorf("chain %s: unknown hook %q", o.chain.Name, h.Hook)
	}
	for i, r := range o.chain.Rules {
		if len(r.Exprs) == 0 {
			return fmt.Errorf("chain %s: rule %d (%q) has no expressions", o.chain.Name, i, r.Text)
		}
	}
	return nil
}

// validateElements checks that each element names a known set and, for an
// add, carries a value of the set's kind. The set is looked up once per
// run of elements of the same set.
func validateElements(es []render.Element, add bool) error {
	var set render.Set
	for i := range es {
		e := &es[i]
		if e.Set != set.Name || set.Name == "" {
			s, ok := render.SetByName(e.Set)
			if !ok {
				return fmt.Errorf("element of unknown set %q", e.Set)
			}
			set = s
		}
		if len(e.Key) == 0 {
			return fmt.Errorf("set %s: element without a key", e.Set)
		}
		if !add {
			continue
		}
		var bad bool
		switch {
		case set.IsVerdictMap():
			bad = e.Verdict == nil || e.Value != nil
		case set.IsMap():
			bad = e.Value == nil || e.Verdict != nil
		default:
			bad = e.Value != nil || e.Verdict != nil
		}
		if bad {
			return fmt.Errorf("set %s: element %s does not match the set's type %s", e.Set, render.FormatElement(*e), set.TypeText())
		}
	}
	return nil
}

// String prints the transaction as the nft commands it stands for, one a
// line, as `nft -f` reads them; an element add or delete is one line per
// element. A single-field interval set's end element prints as render
// prints it ("end ADDR").
func (tx Transaction) String() string {
	var b strings.Builder
	table := render.TableFamily + " " + render.TableName
	for i := range tx.ops {
		o := &tx.ops[i]
		switch o.kind {
		case opDeleteTable:
			fmt.Fprintf(&b, "delete table %s\n", table)
		case opAddTable:
			fmt.Fprintf(&b, "add table %s\n", table)
		case opAddSet:
			fmt.Fprintf(&b, "add %s %s %s { %s }\n", setKeyword(o.set), table, o.set.Name, setSpec(o.set))
		case opAddChain:
			fmt.Fprintf(&b, "add chain %s %s%s\n", table, o.chain.Name, chainSpec(o.chain.Hook))
		case opFlushChain:
			fmt.Fprintf(&b, "flush chain %s %s\n", table, o.chain.Name)
		case opAddRules:
			for _, r := range o.chain.Rules {
				fmt.Fprintf(&b, "add rule %s %s %s\n", table, o.chain.Name, r.Text)
			}
		case opDeleteElements:
			for _, e := range o.elements {
				fmt.Fprintf(&b, "delete element %s %s { %s }\n", table, e.Set, render.FormatKey(e))
			}
		case opAddElements:
			for _, e := range o.elements {
				fmt.Fprintf(&b, "add element %s %s { %s }\n", table, e.Set, render.FormatElement(e))
			}
		case opDeleteChain:
			fmt.Fprintf(&b, "delete chain %s %s\n", table, o.chain.Name)
		}
	}
	return b.String()
}

func setKeyword(s render.Set) string {
	if s.IsMap() {
		return "map"
	}
	return "set"
}

// setSpec is a set's declaration body: "type ...; flags ...;" (and the
// size of the kernel's dynamic sets, see nftSet).
func setSpec(s render.Set) string {
	spec := "type " + s.TypeText() + ";"
	if f := s.FlagsText(); f != "" {
		spec += " flags " + f + ";"
	}
	if s.Dynamic {
		spec += fmt.Sprintf(" size %d;", affinitySize)
	}
	return spec
}

// chainSpec is a base chain's declaration body, "" for a regular chain.
func chainSpec(h *render.Hook) string {
	if h == nil {
		return ""
	}
	return fmt.Sprintf(" { type %s hook %s priority %d; policy accept; }", h.Type, h.Hook, h.Priority)
}
