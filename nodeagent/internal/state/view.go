package state

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// ErrViewDigest is wrapped by Apply's error when an update, once applied,
// does not give the view digest it announces: the agent's view and the
// control plane's disagree, and only a resume can reconcile them.
var ErrViewDigest = errors.New("view digest mismatch")

// Change is one key moving from Old to New. Old is nil when the key is new,
// New is nil when the key is removed.
type Change struct {
	Key string
	Old *doormanv1.Entry
	New *doormanv1.Entry
}

// Applied is what one update did to a view; Revert undoes it.
type Applied struct {
	// Version is the update's version, now the view's.
	Version uint64
	// PrevVersion is the view's version before the update.
	PrevVersion uint64
	// Changes are sorted by key. An upsert that carries the digest the view
	// already holds is not a change.
	Changes []Change
	// Invalid are the upserts that fail doormanv1.ValidateEntry, by key,
	// with why. The view holds them all the same, under the digest they
	// announce, so that its digests stay the control plane's: the caller
	// keeps them out of the kernel and reports them as not programmed.
	Invalid map[string]error
}

// View is the set of entries the agent holds, with its version and digests.
// The zero value is not usable; use New or Restore.
type View struct {
	version uint64
	entries map[string]*doormanv1.Entry
	digests doormanv1.Digests
	// shards counts the entries that are shards of ports sent by node.
	shards int
}

// New returns an empty view at version 0: one that holds nothing.
func New() *View {
	return &View{entries: make(map[string]*doormanv1.Entry)}
}

// Restore builds a view from entries read back from a cache. Unlike an
// update, it accepts no invalid entry: the cache holds what the kernel
// held.
func Restore(version uint64, entries []*doormanv1.Entry) (*View, error) {
	if version > 0 {
		if err := validateRestored(entries); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	return RestoreValid(version, entries)
}

// RestoreValid is Restore for entries the caller has checked each with
// doormanv1.ValidateEntry (or ValidateEncodedEntry) already, as the cache
// does while it decodes them: only their keys are checked to be unique.
func RestoreValid(version uint64, entries []*doormanv1.Entry) (*View, error) {
	if version == 0 && len(entries) > 0 {
		return nil, errors.New("restore: entries without a version")
	}
	v := New()
	if version == 0 {
		return v, nil
	}
	v.entries = make(map[string]*doormanv1.Entry, len(entries))
	for i, e := range entries {
		if e == nil {
			return nil, fmt.Errorf("restore: upsert %d: nil entry", i)
		}
		v.set(e.GetKey(), nil, e)
	}
	if len(v.entries) != len(entries) {
		// A key given twice: name it (the view built is discarded).
		return nil, fmt.Errorf("restore: entry %q upserted twice", firstRepeated(entries))
	}
	v.version = version
	return v, nil
}

// firstRepeated returns the first key of entries that an earlier entry
// has too.
func firstRepeated(entries []*doormanv1.Entry) string {
	seen := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		if _, dup := seen[e.GetKey()]; dup {
			return e.GetKey()
		}
		seen[e.GetKey()] = struct{}{}
	}
	return ""
}

// parallelFrom is the number of entries from which Restore validates them
// on every CPU: at 100,000 entries validation (a digest of each value
// encoded again) takes longer than building the view.
const parallelFrom = 1000

// validateRestored checks entries as a full update's upserts: each
// present, under a non-empty key, and valid; of the invalid ones, the
// error names the first by key (RestoreValid, after it, finds a key given
// twice). The shared validator runs on every CPU for many entries.
func validateRestored(entries []*doormanv1.Entry) error {
	for i, e := range entries {
		switch {
		case e == nil:
			return fmt.Errorf("upsert %d: nil entry", i)
		case e.GetKey() == "":
			return fmt.Errorf("upsert %d: entry with an empty key", i)
		}
	}
	errs := make([]error, len(entries))
	check := func(from, to int) {
		for i := from; i < to; i++ {
			errs[i] = doormanv1.ValidateEntry(entries[i])
		}
	}
	if len(entries) < parallelFrom {
		check(0, len(entries))
	} else {
		var g errgroup.Group
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			g.Go(func() error {
				check(w*len(entries)/workers, (w+1)*len(entries)/workers)
				return nil
			})
		}
		_ = g.Wait()
	}
	var first error
	firstKey := ""
	for i, err := range errs {
		if err != nil && (first == nil || entries[i].GetKey() < firstKey) {
			first, firstKey = err, entries[i].GetKey()
		}
	}
	return first
}

// Version is the version of the last update applied; 0 when holding nothing.
func (v *View) Version() uint64 { return v.version }

// Digest is the digest of the whole view.
func (v *View) Digest() uint64 { return v.digests.View() }

// Len is the number of entries, the node entry included.
func (v *View) Len() int { return len(v.entries) }

// Shards is the number of entries that are shards of ports sent by node
// (see doormanv1.AssembleServicePort): not ports of their own.
func (v *View) Shards() int { return v.shards }

// Get returns the entry under key, or nil.
func (v *View) Get(key string) *doormanv1.Entry { return v.entries[key] }

// Entries returns the view's own map, for reading only: callers must not
// modify it, nor keep it across a later Apply or Revert.
func (v *View) Entries() map[string]*doormanv1.Entry { return v.entries }

// Sorted returns the entries ordered by key.
func (v *View) Sorted() []*doormanv1.Entry {
	out := make([]*doormanv1.Entry, 0, len(v.entries))
	for _, e := range v.entries {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *doormanv1.Entry) int { return strings.Compare(a.GetKey(), b.GetKey()) })
	return out
}

// Holding is what the agent reports in its Hello: empty when it holds
// nothing, so that the control plane sends a full view.
func (v *View) Holding() *doormanv1.Holding {
	if v.version == 0 {
		return &doormanv1.Holding{}
	}
	return &doormanv1.Holding{
		Version:       v.version,
		ViewDigest:    v.digests.View(),
		BucketDigests: v.digests.BucketList(),
	}
}

// Apply checks the update as a message and, if it is well formed, applies
// it in place and returns what changed. An upsert that fails
// doormanv1.ValidateEntry does not make the update fail: it is applied and
// listed in Applied.Invalid. On error (a broken message: version 0,
// duplicate or empty keys, a bucket out of range) the view is unchanged;
// the error names the offending key. When the result does not match the
// update's view digest, the update is undone and the error wraps
// ErrViewDigest.
func (v *View) Apply(u *doormanv1.SyncResponse) (*Applied, error) {
	invalid, err := v.validate(u)
	if err != nil {
		return nil, fmt.Errorf("update %d: %w", u.GetVersion(), err)
	}
	a := v.mutate(u)
	a.Invalid = invalid
	if got, want := v.digests.View(), u.GetViewDigest(); got != want {
		v.Revert(a)
		return nil, fmt.Errorf("update %d: %w: announced %016x, applying it gives %016x", u.GetVersion(), ErrViewDigest, want, got)
	}
	return a, nil
}

// Revert undoes an Applied returned by the last Apply (or, in reverse
// order, by the last few).
func (v *View) Revert(a *Applied) {
	for i := len(a.Changes) - 1; i >= 0; i-- {
		c := a.Changes[i]
		v.set(c.Key, c.New, c.Old)
	}
	v.version = a.PrevVersion
}

// validate checks the whole update without changing anything. An error is
// a broken message; invalid lists the upserts, by key, that the shared
// validator refuses (nil when there is none).
func (v *View) validate(u *doormanv1.SyncResponse) (invalid map[string]error, err error) {
	if u == nil {
		return nil, errors.New("empty update")
	}
	if u.GetVersion() == 0 {
		return nil, errors.New("version 0")
	}
	for _, b := range u.GetReplacedBuckets() {
		if b >= doormanv1.Buckets {
			return nil, fmt.Errorf("replaced bucket %d out of range 0-%d", b, doormanv1.Buckets-1)
		}
	}
	seen := make(map[string]struct{}, len(u.GetUpserts()))
	for i, e := range u.GetUpserts() {
		switch {
		case e == nil:
			return nil, fmt.Errorf("upsert %d: nil entry", i)
		case e.GetKey() == "":
			return nil, fmt.Errorf("upsert %d: entry with an empty key", i)
		}
		if _, dup := seen[e.GetKey()]; dup {
			return nil, fmt.Errorf("entry %q upserted twice", e.GetKey())
		}
		seen[e.GetKey()] = struct{}{}
		if err := doormanv1.ValidateEntry(e); err != nil {
			if invalid == nil {
				invalid = map[string]error{}
			}
			invalid[e.GetKey()] = err
		}
	}
	removed := make(map[string]struct{}, len(u.GetRemovals()))
	for _, k := range u.GetRemovals() {
		if k == "" {
			return nil, errors.New("removal of an empty key")
		}
		if _, dup := seen[k]; dup {
			return nil, fmt.Errorf("entry %q both upserted and removed", k)
		}
		if _, dup := removed[k]; dup {
			return nil, fmt.Errorf("entry %q removed twice", k)
		}
		removed[k] = struct{}{}
	}
	return invalid, nil
}

// mutate applies a validated update.
func (v *View) mutate(u *doormanv1.SyncResponse) *Applied {
	a := &Applied{Version: u.GetVersion(), PrevVersion: v.version}
	upserts := make(map[string]struct{}, len(u.GetUpserts()))
	for _, e := range u.GetUpserts() {
		upserts[e.GetKey()] = struct{}{}
	}
	remove := func(key string) {
		if _, kept := upserts[key]; kept {
			return
		}
		if old, ok := v.entries[key]; ok {
			a.Changes = append(a.Changes, Change{Key: key, Old: old})
		}
	}
	switch {
	case u.GetFull():
		for key := range v.entries {
			remove(key)
		}
	default:
		replaced := make(map[uint32]struct{}, len(u.GetReplacedBuckets()))
		for _, b := range u.GetReplacedBuckets() {
			replaced[b] = struct{}{}
		}
		// One pass over the keys finds every replaced bucket's: only a
		// resume replaces buckets, and an index kept for it would cost
		// every change and every start-up two map writes a key.
		if len(replaced) > 0 {
			for key := range v.entries {
				if _, in := replaced[doormanv1.Bucket(key)]; in {
					remove(key)
				}
			}
		}
		for _, key := range u.GetRemovals() {
			if _, inReplaced := replaced[doormanv1.Bucket(key)]; inReplaced {
				continue // already removed with its bucket, unless upserted
			}
			remove(key)
		}
	}
	for _, e := range u.GetUpserts() {
		old := v.entries[e.GetKey()]
		if old != nil && old.GetDigest() == e.GetDigest() {
			continue
		}
		a.Changes = append(a.Changes, Change{Key: e.GetKey(), Old: old, New: e})
	}
	slices.SortFunc(a.Changes, func(x, y Change) int { return strings.Compare(x.Key, y.Key) })
	for _, c := range a.Changes {
		v.set(c.Key, c.Old, c.New)
	}
	v.version = u.GetVersion()
	return a
}

// set moves key from old (as held now) to next, keeping digests.
func (v *View) set(key string, old, next *doormanv1.Entry) {
	if old != nil {
		v.digests.Toggle(key, old.GetDigest())
		if old.GetServicePort().GetShard() {
			v.shards--
		}
	}
	if next == nil {
		delete(v.entries, key)
		return
	}
	v.digests.Toggle(key, next.GetDigest())
	if next.GetServicePort().GetShard() {
		v.shards++
	}
	v.entries[key] = next
}
