package main

import (
	"fmt"
	"sync"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// keyTable interns entry keys for every simulated agent: the keys are the
// same on every node, so an agent keeps only a digest per key index.
type keyTable struct {
	mu      sync.RWMutex
	index   map[string]int32
	keys    []string
	buckets []uint32
}

func newKeyTable() *keyTable { return &keyTable{index: map[string]int32{}} }

func (t *keyTable) intern(key string) int32 {
	t.mu.RLock()
	i, ok := t.index[key]
	t.mu.RUnlock()
	if ok {
		return i
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if i, ok := t.index[key]; ok {
		return i
	}
	i = int32(len(t.keys))
	t.index[key] = i
	t.keys = append(t.keys, key)
	t.buckets = append(t.buckets, doormanv1.Bucket(key))
	return i
}

func (t *keyTable) snapshot() ([]string, []uint32) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.keys, t.buckets
}

// agentView is what a simulated agent holds: a digest per key (0 = absent)
// and the bucket and view digests, applied exactly as the stream protocol
// says (full view, replaced buckets, upserts, removals) and checked
// against the update's view digest. No kernel.
type agentView struct {
	keys    *keyTable
	digest  []uint64 // by key index
	d       doormanv1.Digests
	version uint64
	entries int
	journal []undo // what apply changed, to roll back on a bad digest
}

type undo struct {
	i      int32
	digest uint64
}

func newAgentView(keys *keyTable) *agentView { return &agentView{keys: keys} }

func (v *agentView) set(i int32, key string, digest uint64) {
	if int(i) >= len(v.digest) {
		v.grow(int(i) + 1)
	}
	v.journal = append(v.journal, undo{i, v.digest[i]})
	if old := v.digest[i]; old != 0 {
		v.d.Toggle(key, old)
		v.entries--
	}
	if digest != 0 {
		v.d.Toggle(key, digest)
		v.entries++
	}
	v.digest[i] = digest
}

// grow makes room for a digest per key index below n, and for every key
// interned so far.
func (v *agentView) grow(n int) {
	keys, _ := v.keys.snapshot()
	want := max(n, len(keys))
	if want <= cap(v.digest) {
		v.digest = v.digest[:want]
		return
	}
	d := make([]uint64, want, max(want, 2*cap(v.digest)))
	copy(d, v.digest)
	v.digest = d
}

// fit lets go of the room grow made beyond the keys and of a full
// view's journal (an entry per key): thousands of simulated agents each
// keep a view between updates, and keep no more than a digest per key.
func (v *agentView) fit() {
	if cap(v.digest) > len(v.digest) {
		d := make([]uint64, len(v.digest))
		copy(d, v.digest)
		v.digest = d
	}
	if cap(v.journal) > journalKeep {
		v.journal = nil
	}
}

// journalKeep is the most journal capacity a view keeps between
// updates.
const journalKeep = 1024

// apply moves the view by one update. On error the view is unchanged (the
// agent Nacks and keeps what it had).
func (v *agentView) apply(u *doormanv1.SyncResponse) error {
	for _, e := range u.GetUpserts() {
		if e.GetKey() == "" || e.GetDigest() == 0 {
			return fmt.Errorf("update %d: entry %q without key or digest", u.GetVersion(), e.GetKey())
		}
		if e.GetServicePort() == nil && e.GetNode() == nil {
			return fmt.Errorf("update %d: entry %s has no value", u.GetVersion(), e.GetKey())
		}
	}
	for _, b := range u.GetReplacedBuckets() {
		if b >= doormanv1.Buckets {
			return fmt.Errorf("update %d: bucket %d out of range", u.GetVersion(), b)
		}
	}
	v.journal = v.journal[:0]
	if u.GetFull() {
		keys, _ := v.keys.snapshot()
		for i, dg := range v.digest {
			if dg != 0 {
				v.set(int32(i), keys[i], 0)
			}
		}
	}
	if rb := u.GetReplacedBuckets(); len(rb) > 0 {
		replaced := map[uint32]bool{}
		for _, b := range rb {
			replaced[b] = true
		}
		upserted := map[string]bool{}
		for _, e := range u.GetUpserts() {
			upserted[e.GetKey()] = true
		}
		keys, buckets := v.keys.snapshot()
		for i, dg := range v.digest {
			if dg != 0 && replaced[buckets[i]] && !upserted[keys[i]] {
				v.set(int32(i), keys[i], 0)
			}
		}
	}
	for _, k := range u.GetRemovals() {
		v.set(v.keys.intern(k), k, 0)
	}
	for _, e := range u.GetUpserts() {
		v.set(v.keys.intern(e.GetKey()), e.GetKey(), e.GetDigest())
	}
	if got, want := v.d.View(), u.GetViewDigest(); got != want {
		v.rollback()
		v.fit()
		return fmt.Errorf("update %d: view digest %#x after applying, update says %#x", u.GetVersion(), got, want)
	}
	v.version = u.GetVersion()
	v.fit()
	return nil
}

func (v *agentView) rollback() {
	keys, _ := v.keys.snapshot()
	j := v.journal
	v.journal = nil
	for k := len(j) - 1; k >= 0; k-- {
		v.set(j[k].i, keys[j[k].i], j[k].digest)
	}
	v.journal = j[:0]
}

// holding is what the agent tells a control plane it holds.
func (v *agentView) holding() *doormanv1.Holding {
	if v.version == 0 {
		return nil
	}
	return &doormanv1.Holding{Version: v.version, ViewDigest: v.d.View(), BucketDigests: v.d.BucketList()}
}
