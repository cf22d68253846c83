package cluster

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// CapDoormanSet makes the kernel refuse any new element of one of
// doorman's sets on a node, as an operator who replaced the set with a
// bounded one would: it re-creates the set, over netlink in the node's
// namespace, with the same type, flags and elements and a size equal to
// its element count, so that adding one more fails (ENFILE). The rules
// that use the set are deleted with it (the kernel refuses to delete a set
// in use); the agent sees the foreign change and puts them back, and the
// set keeps its size. It returns the size set; a set with no element
// cannot be capped (size 0 means no limit).
func (c *Cluster) CapDoormanSet(node, set string) (uint32, error) {
	return c.resizeDoormanSet(node, set, true)
}

// UncapDoormanSet re-creates the set as CapDoormanSet does, without a size:
// the kernel takes new elements again. The agent puts back the rules that
// use it.
func (c *Cluster) UncapDoormanSet(node, set string) error {
	_, err := c.resizeDoormanSet(node, set, false)
	return err
}

// DoormanSetSize reads a set of doorman's table on a node: its size (0: no
// limit) and how many elements it holds.
func (c *Cluster) DoormanSetSize(node, set string) (size uint32, elements int, err error) {
	err = c.withNFT(node, func(conn *nftables.Conn) error {
		s, els, err := doormanSet(conn, node, set)
		if err != nil {
			return err
		}
		size, elements = s.Size, len(els)
		return nil
	})
	return size, elements, err
}

func (c *Cluster) resizeDoormanSet(node, set string, limit bool) (uint32, error) {
	var size uint32
	err := c.withNFT(node, func(conn *nftables.Conn) error {
		s, els, err := doormanSet(conn, node, set)
		if err != nil {
			return err
		}
		t := s.Table
		if limit {
			if len(els) == 0 {
				return fmt.Errorf("set %s on %s is empty: a size of 0 is no limit", set, node)
			}
			size = uint32(len(els)) //nolint:gosec // element counts fit in 32 bits
		}
		users, err := rulesUsingSet(conn, t, set)
		if err != nil {
			return fmt.Errorf("rules using %s on %s: %w", set, node, err)
		}
		for _, r := range users {
			if err := conn.DelRule(r); err != nil {
				return fmt.Errorf("delete rule %s handle %d on %s: %w", r.Chain.Name, r.Handle, node, err)
			}
		}
		conn.DelSet(s)
		ns := &nftables.Set{
			Table:         t,
			Name:          s.Name,
			Constant:      s.Constant,
			Interval:      s.Interval,
			AutoMerge:     s.AutoMerge,
			IsMap:         s.IsMap,
			HasTimeout:    s.HasTimeout,
			Timeout:       s.Timeout,
			Dynamic:       s.Dynamic,
			Concatenation: s.Concatenation,
			KeyType:       s.KeyType,
			DataType:      s.DataType,
			Size:          size,
		}
		add := make([]nftables.SetElement, len(els))
		for i, e := range els {
			add[i] = nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val, IntervalEnd: e.IntervalEnd, VerdictData: e.VerdictData}
		}
		if err := conn.AddSet(ns, add); err != nil {
			return fmt.Errorf("add set %s on %s: %w", set, node, err)
		}
		if err := conn.Flush(); err != nil {
			return fmt.Errorf("re-create set %s (size %d) on %s: %w", set, size, node, err)
		}
		return nil
	})
	return size, err
}

// doormanSet reads one of the sets or maps of doorman's table on a node,
// with its elements.
func doormanSet(conn *nftables.Conn, node, set string) (*nftables.Set, []nftables.SetElement, error) {
	t := &nftables.Table{Family: DoormanTableFamily, Name: DoormanTableName}
	s, err := conn.GetSetByName(t, set)
	if err != nil {
		return nil, nil, fmt.Errorf("set %s on %s: %w", set, node, err)
	}
	els, err := conn.GetSetElements(s)
	if err != nil {
		return nil, nil, fmt.Errorf("elements of %s on %s: %w", set, node, err)
	}
	return s, els, nil
}

// rulesUsingSet lists the rules of table t that look up the named set.
func rulesUsingSet(conn *nftables.Conn, t *nftables.Table, set string) ([]*nftables.Rule, error) {
	chains, err := conn.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, err
	}
	var out []*nftables.Rule
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != t.Name {
			continue
		}
		rules, err := conn.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("rules of %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			if usesSet(r, set) {
				out = append(out, &nftables.Rule{Table: t, Chain: ch, Handle: r.Handle})
			}
		}
	}
	return out, nil
}

func usesSet(r *nftables.Rule, set string) bool {
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Lookup:
			if e.SetName == set {
				return true
			}
		case *expr.Dynset:
			if e.SetName == set {
				return true
			}
		}
	}
	return false
}
