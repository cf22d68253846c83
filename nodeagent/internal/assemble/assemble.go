// Package assemble is the kernel layer that turns ports sent by node into
// the ports the node programs. The agent's view, its digests and its cache
// hold what the control plane sent: a port of a Service with a Local
// traffic policy may come as one entry without endpoints
// (endpoints_by_node) and one shard per node with endpoints. The layers
// below (rules, follow-ups, the dataplane) see one ordinary port instead,
// assembled by doormanv1.AssembleServicePort for this node, and never a
// shard; every other entry passes through unchanged.
package assemble

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Kernel is an agent.Kernel that assembles ports sent by node for the
// kernel below it.
type Kernel struct {
	inner agent.Kernel
	node  string

	mu sync.Mutex
	// ports are the entries of ports sent by node, by key; shards their
	// shards, by port key and node (a shard may come before its port).
	ports  map[string]*doormanv1.Entry
	shards map[string]map[string]*doormanv1.Entry
	// given is the assembled entry of each port sent by node, as last
	// given to the kernel below in a call that committed.
	given map[string]*doormanv1.Entry
	// notProgrammed is the kernel's list of entries left out, as the last
	// call that committed returned it: an Apply that changes nothing below
	// returns it again, since the list is whole, not the call's part.
	notProgrammed map[string]error
}

var _ agent.Kernel = (*Kernel)(nil)

// Wrap returns inner behind the assembly for node.
func Wrap(inner agent.Kernel, node string) *Kernel {
	return &Kernel{inner: inner, node: node, ports: map[string]*doormanv1.Entry{}, shards: map[string]map[string]*doormanv1.Entry{}, given: map[string]*doormanv1.Entry{}}
}

// kind says what an entry is to the assembly.
type kind int

const (
	whole kind = iota // passes through
	port              // a port sent by node
	shard             // a shard
)

func kindOf(e *doormanv1.Entry) kind {
	sp := e.GetServicePort()
	switch {
	case sp.GetShard():
		return shard
	case sp.GetEndpointsByNode():
		return port
	}
	return whole
}

// Sync programs the view, with its ports sent by node assembled and its
// shards left out.
func (k *Kernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ports := map[string]*doormanv1.Entry{}
	shards := map[string]map[string]*doormanv1.Entry{}
	out := make(map[string]*doormanv1.Entry, len(view))
	for key, e := range view {
		switch kindOf(e) {
		case whole:
			out[key] = e
		case port:
			ports[key] = e
		case shard:
			addShard(shards, key, e)
		}
	}
	given := make(map[string]*doormanv1.Entry, len(ports))
	for key, e := range ports {
		a, err := k.assemble(e, shards[key])
		if err != nil {
			return dataplane.Stats{}, err
		}
		out[key], given[key] = a, a
	}
	stats, err := k.inner.Sync(out)
	var partial *dataplane.InvalidEntriesError
	if err == nil || errors.As(err, &partial) {
		k.ports, k.shards, k.given = ports, shards, given
		k.notProgrammed = stats.NotProgrammed
	}
	return stats, err
}

func addShard(shards map[string]map[string]*doormanv1.Entry, key string, e *doormanv1.Entry) {
	parent, _ := doormanv1.ShardParent(key)
	m := shards[parent]
	if m == nil {
		m = map[string]*doormanv1.Entry{}
		shards[parent] = m
	}
	m[e.GetServicePort().GetShardNode()] = e
}

// Apply moves the kernel by the changes: a change of a port sent by node
// or of one of its shards becomes one change of the assembled port, when
// that differs; shards alone never reach the kernel.
func (k *Kernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []dataplane.Change
	ports := map[string]*doormanv1.Entry{} // changed ports, nil: no longer sent by node
	shards := map[string]map[string]*doormanv1.Entry{}
	wholeOld := map[string]*doormanv1.Entry{}
	wholeNew := map[string]*doormanv1.Entry{}
	dirty := map[string]struct{}{}
	for _, c := range changes {
		oldKind, newKind := kindOf(c.Old), kindOf(c.New)
		if c.Old == nil {
			oldKind = newKind
		}
		if c.New == nil {
			newKind = oldKind
		}
		switch {
		case oldKind == shard || newKind == shard:
			if oldKind != newKind {
				return dataplane.Stats{}, fmt.Errorf("entry %q: a shard and a port at once", c.Key)
			}
			parent, _ := doormanv1.ShardParent(c.Key)
			node := c.New.GetServicePort().GetShardNode()
			if c.New == nil {
				node = c.Old.GetServicePort().GetShardNode()
			}
			m := shards[parent]
			if m == nil {
				m = maps.Clone(k.shards[parent])
				if m == nil {
					m = map[string]*doormanv1.Entry{}
				}
				shards[parent] = m
			}
			if c.New == nil {
				delete(m, node)
			} else {
				m[node] = c.New
			}
			dirty[parent] = struct{}{}
		case oldKind == port || newKind == port || k.given[c.Key] != nil:
			ports[c.Key] = nil
			if newKind == port {
				ports[c.Key] = c.New
			}
			if oldKind == whole {
				wholeOld[c.Key] = c.Old
			}
			if newKind == whole {
				wholeNew[c.Key] = c.New
			}
			dirty[c.Key] = struct{}{}
		default:
			out = append(out, c)
		}
	}
	given := map[string]*doormanv1.Entry{}
	for key := range dirty {
		p, changed := ports[key]
		if !changed {
			p = k.ports[key]
		}
		m, ok := shards[key]
		if !ok {
			m = k.shards[key]
		}
		var next *doormanv1.Entry
		if p != nil {
			a, err := k.assemble(p, m)
			if err != nil {
				return dataplane.Stats{}, err
			}
			next = a
		} else {
			next = wholeNew[key]
		}
		old := k.given[key]
		if old == nil {
			old = wholeOld[key]
		}
		given[key] = nil
		if p != nil {
			given[key] = next
		}
		if old.GetDigest() == next.GetDigest() && (old == nil) == (next == nil) {
			continue
		}
		out = append(out, dataplane.Change{Key: key, Old: old, New: next})
	}
	slices.SortFunc(out, func(a, b dataplane.Change) int { return strings.Compare(a.Key, b.Key) })
	stats := dataplane.Stats{NotProgrammed: k.notProgrammed}
	if len(out) > 0 {
		var err error
		if stats, err = k.inner.Apply(out); err != nil {
			return stats, err
		}
		k.notProgrammed = stats.NotProgrammed
	}
	for key, p := range ports {
		if p == nil {
			delete(k.ports, key)
		} else {
			k.ports[key] = p
		}
	}
	for key, m := range shards {
		if len(m) == 0 {
			delete(k.shards, key)
		} else {
			k.shards[key] = m
		}
	}
	for key, a := range given {
		if a == nil {
			delete(k.given, key)
		} else {
			k.given[key] = a
		}
	}
	return stats, nil
}

// assemble is the entry of port assembled for this node from its shards.
func (k *Kernel) assemble(port *doormanv1.Entry, shards map[string]*doormanv1.Entry) (*doormanv1.Entry, error) {
	list := make([]*doormanv1.ServicePort, 0, len(shards))
	for _, n := range slices.Sorted(maps.Keys(shards)) {
		list = append(list, shards[n].GetServicePort())
	}
	sp := doormanv1.AssembleServicePort(port.GetServicePort(), list, k.node)
	digest, err := doormanv1.ValueDigest(sp)
	if err != nil {
		return nil, fmt.Errorf("entry %q: assembling its endpoints: %w", port.GetKey(), err)
	}
	return &doormanv1.Entry{Key: port.GetKey(), Digest: digest, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}, nil
}

// RetireUnused passes on: no entry changes.
func (k *Kernel) RetireUnused() (int, error) { return k.inner.RetireUnused() }

// Unchanged passes the question on (see agent.Unchanging).
func (k *Kernel) Unchanged() bool { return agent.Unchanged(k.inner) }
