package view

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// DefaultLogLimit is how many change records are kept when New is given 0.
const DefaultLogLimit = 1 << 16

var nodeBucket = doormanv1.Bucket(doormanv1.NodeKey)

// ErrUnknownNode is returned for a node the view does not track (no Node
// object and no session).
var ErrUnknownNode = errors.New("unknown node")

// slot is one key's value on every node.
type slot struct {
	key    string
	bucket uint32
	def    *wire.Entry
	byZone map[string]*wire.Entry
	byNode map[string]*wire.Entry
}

func (s *slot) variant() bool { return s != nil && (len(s.byZone) > 0 || len(s.byNode) > 0) }

// pick is the value node (of zone) programs; nil for a nil slot.
func (s *slot) pick(node, zone string) *wire.Entry {
	if s == nil {
		return nil
	}
	if e, ok := s.byNode[node]; ok {
		return e
	}
	if zone != "" {
		if e, ok := s.byZone[zone]; ok {
			return e
		}
	}
	return s.def
}

// contribution is what the node's pick adds to its digests on top of the
// shared (default) value: zero when it programs the default.
func (s *slot) contribution(node, zone string) uint64 {
	if s == nil {
		return 0
	}
	e := s.pick(node, zone)
	if e == s.def {
		return 0
	}
	return e.Hash ^ s.def.Hash
}

type node struct {
	name   string
	zone   string
	entry  *wire.Entry // nil: no Node object, or an invalid one
	object bool
	refs   int
	// delta[b] XORed with the shared digest of bucket b gives this node's.
	delta     map[uint32]uint64
	deltaView uint64
	last      uint64 // the last version that changed this node's view alone
}

func (n *node) toggle(bucket uint32, h uint64) {
	if h == 0 {
		return
	}
	d := n.delta[bucket] ^ h
	if d == 0 {
		delete(n.delta, bucket)
	} else {
		n.delta[bucket] = d
	}
	n.deltaView ^= h
}

type record struct {
	version uint64
	key     string
	node    string // "" for every node
}

// View is the set of all nodes' views. It is not safe for concurrent use.
type View struct {
	version    uint64
	slots      map[string]*slot
	variants   map[string]*slot
	services   map[string][]string
	bucketKeys [doormanv1.Buckets]map[string]struct{}
	base       [doormanv1.Buckets]uint64
	baseView   uint64
	// baseCopy is an immutable copy of base that Digests values share;
	// nil until asked for after base changed.
	baseCopy *[doormanv1.Buckets]uint64
	nodes    map[string]*node
	zones    map[string]map[string]struct{}

	log       []record
	limit     int
	truncated uint64 // records up to this version are gone
	lastAll   uint64

	// shared is the encoding of the values of every key without
	// overrides, which every node holds alike (see Full); nil until
	// asked for after a change.
	shared *wire.Body

	marshals uint64
}

// New returns an empty view whose versions start after seed. limit bounds
// the change log (0: DefaultLogLimit).
func New(seed uint64, limit int) *View {
	if limit <= 0 {
		limit = DefaultLogLimit
	}
	return &View{
		version:   seed,
		truncated: seed,
		lastAll:   seed,
		slots:     map[string]*slot{},
		variants:  map[string]*slot{},
		services:  map[string][]string{},
		nodes:     map[string]*node{},
		zones:     map[string]map[string]struct{}{},
		limit:     limit,
	}
}

// Reserve makes room for the keys of services more Services of one key
// each, the usual Service's: the first views of a cluster's Services are
// then built without the maps doubling again and again as they fill.
func (v *View) Reserve(services int) {
	if services <= 0 {
		return
	}
	v.slots = grown(v.slots, services)
	v.services = grown(v.services, services)
}

// grown is a copy of m with room for n more entries.
func grown[V any](m map[string]V, n int) map[string]V {
	out := make(map[string]V, len(m)+n)
	maps.Copy(out, m)
	return out
}

// Version is the newest version.
func (v *View) Version() uint64 { return v.version }

// Stats are counters for tests and Inspect.
type Stats struct {
	// Marshals counts values encoded since the view was created.
	Marshals   uint64
	Keys       int
	Variants   int
	Nodes      int
	LogRecords int
}

// Stats returns the view's counters.
func (v *View) Stats() Stats {
	return Stats{Marshals: v.marshals, Keys: len(v.slots), Variants: len(v.variants), Nodes: len(v.nodes), LogRecords: len(v.log)}
}

// SetService replaces a Service's entries (nil: it has none). It returns
// whether any node's view changed; if so the version was bumped once.
func (v *View) SetService(id string, values map[string]model.Value) (bool, error) {
	next := make(map[string]*slot, len(values))
	for key, val := range values {
		s, err := v.build(key, val)
		if err != nil {
			return false, fmt.Errorf("service %s: %w", id, err)
		}
		next[key] = s
	}
	version := v.version + 1
	changed := false
	for _, key := range v.services[id] {
		if _, ok := next[key]; !ok {
			changed = v.replace(key, v.slots[key], nil, version) || changed
		}
	}
	keys := make([]string, 0, len(next))
	for key, s := range next {
		keys = append(keys, key)
		changed = v.replace(key, v.slots[key], s, version) || changed
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		delete(v.services, id)
	} else {
		v.services[id] = keys
	}
	if changed {
		v.commit(version)
	}
	return changed, nil
}

// build encodes a Value; overrides equal to what the node would program
// without them are dropped and equal overrides share one encoding. A node
// override equal to the default still counts while zone overrides exist:
// it stands before the node's zone's.
func (v *View) build(key string, val model.Value) (*slot, error) {
	if val.Default == nil {
		return nil, fmt.Errorf("key %s: no default value", key)
	}
	s := &slot{key: key, bucket: doormanv1.Bucket(key)}
	var err error
	if s.def, err = v.encode(key, val.Default); err != nil {
		return nil, err
	}
	if val.Trigger != 0 {
		s.def.Trigger, s.def.TriggerOutside = val.Trigger, true
	}
	seen := map[uint64]*wire.Entry{s.def.Digest: s.def}
	intern := func(sp *doormanv1.ServicePort) (*wire.Entry, error) {
		e, err := v.encode(key, sp)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[e.Digest]; ok {
			return prev, nil
		}
		seen[e.Digest] = e
		return e, nil
	}
	if s.byZone, err = overrides(val.ByZone, intern, func(e *wire.Entry) bool { return e == s.def }); err != nil {
		return nil, err
	}
	if s.byNode, err = overrides(val.ByNode, intern, func(e *wire.Entry) bool { return e == s.def && len(s.byZone) == 0 }); err != nil {
		return nil, err
	}
	return s, nil
}

// overrides encodes each override with intern, leaving out those drop
// accepts; nil when none is left.
func overrides(in map[string]*doormanv1.ServicePort, intern func(*doormanv1.ServicePort) (*wire.Entry, error), drop func(*wire.Entry) bool) (map[string]*wire.Entry, error) {
	var out map[string]*wire.Entry
	for name, sp := range in {
		e, err := intern(sp)
		if err != nil {
			return nil, err
		}
		if drop(e) {
			continue
		}
		if out == nil {
			out = map[string]*wire.Entry{}
		}
		out[name] = e
	}
	return out, nil
}

func (v *View) encode(key string, sp *doormanv1.ServicePort) (*wire.Entry, error) {
	e, err := wire.ServicePort(sp)
	if err != nil {
		return nil, err
	}
	v.marshals++
	if e.Key != key {
		return nil, fmt.Errorf("key %s: value is keyed %s", key, e.Key)
	}
	return e, nil
}

func digestOf(e *wire.Entry) (uint64, bool) {
	if e == nil {
		return 0, false
	}
	return e.Digest, true
}

func sameEntry(a, b *wire.Entry) bool {
	da, oka := digestOf(a)
	db, okb := digestOf(b)
	return oka == okb && da == db
}

// replace moves key from old to next (either may be nil), keeping digests
// and the change log. It reports whether any node's value changed.
func (v *View) replace(key string, old, next *slot, version uint64) bool {
	if old == nil && next == nil {
		return false
	}
	bucket := doormanv1.Bucket(key)
	var oldDef, nextDef *wire.Entry
	if old != nil {
		oldDef = old.def
	}
	if next != nil {
		nextDef = next.def
	}
	defChanged := !sameEntry(oldDef, nextDef)
	if defChanged || old.variant() != next.variant() {
		v.shared = nil
	}
	if defChanged {
		v.replaceDefault(bucket, oldDef, nextDef)
	}
	changed := defChanged
	for _, name := range v.affectedNodes(old, next) {
		n := v.nodes[name]
		if n == nil {
			// Untracked nodes get their delta computed when tracked.
			continue
		}
		n.toggle(bucket, old.contribution(name, n.zone)^next.contribution(name, n.zone))
		if !defChanged && !sameEntry(old.pick(name, n.zone), next.pick(name, n.zone)) {
			v.record(version, key, name)
			n.last = version
			changed = true
		}
	}
	if defChanged {
		v.record(version, key, "")
		v.lastAll = version
	}
	// Keep the new pointers even when nothing changed: they are equal.
	v.store(key, bucket, next)
	return changed
}

// replaceDefault moves the base digests from the default value oldDef to
// nextDef (either may be nil).
func (v *View) replaceDefault(bucket uint32, oldDef, nextDef *wire.Entry) {
	h := uint64(0)
	if oldDef != nil {
		h ^= oldDef.Hash
	}
	if nextDef != nil {
		h ^= nextDef.Hash
	}
	v.base[bucket] ^= h
	v.baseView ^= h
	v.baseCopy = nil
}

// affectedNodes lists, sorted, the nodes whose override may differ between
// old and next (either may be nil).
func (v *View) affectedNodes(old, next *slot) []string {
	affected := map[string]struct{}{}
	for _, s := range []*slot{old, next} {
		if s == nil {
			continue
		}
		for name := range s.byNode {
			affected[name] = struct{}{}
		}
		for zone := range s.byZone {
			for name := range v.zones[zone] {
				affected[name] = struct{}{}
			}
		}
	}
	names := make([]string, 0, len(affected))
	for name := range affected {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// store keeps next as key's slot, or forgets key when next is nil.
func (v *View) store(key string, bucket uint32, next *slot) {
	if next == nil {
		delete(v.slots, key)
		delete(v.variants, key)
		delete(v.bucketKeys[bucket], key)
		return
	}
	v.slots[key] = next
	if next.variant() {
		v.variants[key] = next
	} else {
		delete(v.variants, key)
	}
	if v.bucketKeys[bucket] == nil {
		v.bucketKeys[bucket] = map[string]struct{}{}
	}
	v.bucketKeys[bucket][key] = struct{}{}
}

func (v *View) record(version uint64, key, node string) {
	v.log = append(v.log, record{version: version, key: key, node: node})
}

// commit makes version the newest and bounds the log: when it holds more
// than the limit, the oldest records (whole versions) go, and nodes that had
// not acknowledged past them resync by bucket digests.
func (v *View) commit(version uint64) {
	v.version = version
	if len(v.log) <= v.limit {
		return
	}
	cut := len(v.log) - v.limit/2
	last := v.log[cut-1].version
	for cut < len(v.log) && v.log[cut].version == last {
		cut++
	}
	v.truncated = last
	v.log = append([]record(nil), v.log[cut:]...)
}

// SetNode sets a node's Node entry (nil: the Node object is gone or
// invalid). It returns whether the node's view changed.
func (v *View) SetNode(name string, value *doormanv1.Node) (bool, error) {
	var e *wire.Entry
	if value != nil {
		if value.GetName() != name {
			return false, fmt.Errorf("node %s: entry names %q", name, value.GetName())
		}
		var err error
		if e, err = wire.Node(value); err != nil {
			return false, fmt.Errorf("node %s: %w", name, err)
		}
		v.marshals++
	}
	n := v.nodes[name]
	if n == nil {
		if value == nil {
			return false, nil
		}
		n = v.track(name)
	}
	n.object = value != nil
	zone := value.GetZone()
	version := v.version + 1
	changed := false
	if !sameEntry(n.entry, e) {
		if n.entry != nil {
			n.toggle(nodeBucket, n.entry.Hash)
		}
		if e != nil {
			n.toggle(nodeBucket, e.Hash)
		}
		v.record(version, doormanv1.NodeKey, name)
		changed = true
	}
	n.entry = e
	if zone != n.zone {
		changed = v.rezone(n, zone, version) || changed
	}
	if !n.object && n.refs == 0 {
		v.untrack(n)
	}
	if changed {
		n.last = version
		v.commit(version)
	}
	return changed, nil
}

// rezone moves a node to another zone, updating its zone overrides.
func (v *View) rezone(n *node, zone string, version uint64) bool {
	keys := make([]string, 0)
	for key, s := range v.variants {
		if len(s.byZone) > 0 {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	changed := false
	for _, key := range keys {
		s := v.variants[key]
		before, after := s.pick(n.name, n.zone), s.pick(n.name, zone)
		n.toggle(s.bucket, s.contribution(n.name, n.zone)^s.contribution(n.name, zone))
		if !sameEntry(before, after) {
			v.record(version, key, n.name)
			changed = true
		}
	}
	v.unzone(n)
	n.zone = zone
	if zone != "" {
		if v.zones[zone] == nil {
			v.zones[zone] = map[string]struct{}{}
		}
		v.zones[zone][n.name] = struct{}{}
	}
	return changed
}

func (v *View) unzone(n *node) {
	if z := v.zones[n.zone]; z != nil {
		delete(z, n.name)
		if len(z) == 0 {
			delete(v.zones, n.zone)
		}
	}
}

// track starts keeping a node's digests: its delta is computed from the
// keys with overrides.
func (v *View) track(name string) *node {
	n := &node{name: name, delta: map[uint32]uint64{}, last: v.truncated}
	for _, s := range v.variants {
		n.toggle(s.bucket, s.contribution(name, ""))
	}
	v.nodes[name] = n
	return n
}

func (v *View) untrack(n *node) {
	v.unzone(n)
	delete(v.nodes, n.name)
}

// Acquire keeps a node tracked while a session serves it, even without a
// Node object.
func (v *View) Acquire(name string) {
	n := v.nodes[name]
	if n == nil {
		n = v.track(name)
	}
	n.refs++
}

// Release undoes Acquire.
func (v *View) Release(name string) {
	n := v.nodes[name]
	if n == nil {
		return
	}
	n.refs--
	if n.refs <= 0 && !n.object {
		v.untrack(n)
	}
}

// Nodes lists the tracked nodes, sorted.
func (v *View) Nodes() []string {
	out := make([]string, 0, len(v.nodes))
	for name := range v.nodes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Known reports whether a node is tracked.
func (v *View) Known(name string) bool { return v.nodes[name] != nil }

// HasObject reports whether the node has a Node object.
func (v *View) HasObject(name string) bool {
	n := v.nodes[name]
	return n != nil && n.object
}

// Desired is the newest version that changed the node's view.
func (v *View) Desired(name string) uint64 {
	if n := v.nodes[name]; n != nil && n.last > v.lastAll {
		return n.last
	}
	return v.lastAll
}

// Lookup returns the entry a node holds under key, nil when none.
func (v *View) Lookup(name, key string) *wire.Entry {
	n := v.nodes[name]
	if n == nil {
		return nil
	}
	if key == doormanv1.NodeKey {
		return n.entry
	}
	return v.slots[key].pick(name, n.zone)
}

// Entries returns every entry of a node's view, sorted by key.
func (v *View) Entries(name string) ([]*wire.Entry, error) {
	n := v.nodes[name]
	if n == nil {
		return nil, fmt.Errorf("node %s: %w", name, ErrUnknownNode)
	}
	out := make([]*wire.Entry, 0, len(v.slots)+1)
	if n.entry != nil {
		out = append(out, n.entry)
	}
	for _, s := range v.slots {
		out = append(out, s.pick(name, n.zone))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Full returns a node's whole view in two parts: own, the entries that
// may differ between nodes (the node entry and the node's values of keys
// with overrides), sorted by key; and shared, the encoding of the values of
// every other key, made once per version for all nodes.
func (v *View) Full(name string) (own []*wire.Entry, shared *wire.Body, err error) {
	n := v.nodes[name]
	if n == nil {
		return nil, nil, fmt.Errorf("node %s: %w", name, ErrUnknownNode)
	}
	own = make([]*wire.Entry, 0, len(v.variants)+1)
	if n.entry != nil {
		own = append(own, n.entry)
	}
	for _, s := range v.variants {
		own = append(own, s.pick(name, n.zone))
	}
	sort.Slice(own, func(i, j int) bool { return own[i].Key < own[j].Key })
	if v.shared == nil {
		entries := make([]*wire.Entry, 0, len(v.slots)-len(v.variants))
		for _, s := range v.slots {
			if !s.variant() {
				entries = append(entries, s.def)
			}
		}
		sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
		v.shared = wire.NewBody(entries)
	}
	return own, v.shared, nil
}

// BucketEntries returns the entries of one bucket of a node's view, sorted
// by key.
func (v *View) BucketEntries(name string, bucket uint32) []*wire.Entry {
	n := v.nodes[name]
	if n == nil {
		return nil
	}
	var out []*wire.Entry
	if bucket == nodeBucket && n.entry != nil {
		out = append(out, n.entry)
	}
	for key := range v.bucketKeys[bucket] {
		out = append(out, v.slots[key].pick(name, n.zone))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Digests are a node's bucket digests as of one version, cheap to keep for
// every node: the digests all nodes share are one array per version, and a
// node adds only where its overrides make its own differ. The zero value
// holds no digests. It is immutable.
type Digests struct {
	shared *[doormanv1.Buckets]uint64
	own    map[uint32]uint64
}

// DigestsOf wraps bucket digests (as a node reported them); d must not be
// changed afterwards.
func DigestsOf(d *[doormanv1.Buckets]uint64) Digests { return Digests{shared: d} }

// Known reports whether d holds digests (it is not the zero value).
func (d Digests) Known() bool { return d.shared != nil }

// Bucket is the digest of bucket b.
func (d Digests) Bucket(b uint32) uint64 { return d.shared[b] ^ d.own[b] }

// BucketDigests returns a node's bucket digests as of now.
func (v *View) BucketDigests(name string) Digests {
	if v.baseCopy == nil {
		c := v.base
		v.baseCopy = &c
	}
	d := Digests{shared: v.baseCopy}
	if n := v.nodes[name]; n != nil && len(n.delta) > 0 {
		d.own = maps.Clone(n.delta)
	}
	return d
}

// Digest is the digest of a node's whole view.
func (v *View) Digest(name string) uint64 {
	if n := v.nodes[name]; n != nil {
		return v.baseView ^ n.deltaView
	}
	return v.baseView
}

// Changed returns the keys whose value for the node changed after version
// since, sorted; ok is false when the log no longer reaches back that far.
func (v *View) Changed(name string, since uint64) (keys []string, ok bool) {
	if since < v.truncated {
		return nil, false
	}
	i := sort.Search(len(v.log), func(i int) bool { return v.log[i].version > since })
	seen := map[string]struct{}{}
	for _, r := range v.log[i:] {
		if r.node != "" && r.node != name {
			continue
		}
		if _, dup := seen[r.key]; dup {
			continue
		}
		seen[r.key] = struct{}{}
		keys = append(keys, r.key)
	}
	slices.Sort(keys)
	return keys, true
}

// ServiceKeys returns the keys a Service has, sorted.
func (v *View) ServiceKeys(id string) []string {
	return slices.Clone(v.services[id])
}

// Count is how many entries a node's view holds.
func (v *View) Count(name string) int {
	n := v.nodes[name]
	if n == nil {
		return 0
	}
	if n.entry != nil {
		return len(v.slots) + 1
	}
	return len(v.slots)
}
