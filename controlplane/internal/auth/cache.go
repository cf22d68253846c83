package auth

import (
	"sync/atomic"
	"time"

	"k8s.io/utils/lru"
)

// outcome is what a check decided about a token.
type outcome struct {
	node    string    // agent: the node the token is bound to
	pod     objectRef // agent: the Pod the token is bound to, when known
	expires time.Time // the token's expiry, when it says (zero: not known)
	err     error     // a status error, or nil: admitted
	// transient marks an error that says nothing about the token (the API
	// server did not answer, the review did not get its turn): it is
	// neither cached nor held against the caller's peer.
	transient bool
}

// refused reports whether the token itself was found wanting.
func (o outcome) refused() bool { return o.err != nil && !o.transient }

// outcomes caches admissions and refusals in two bounded LRU caches, each
// with its own TTL, as the API server's token cache does: refusals never
// push an admission out.
type outcomes struct {
	now                    func() time.Time
	successTTL, failureTTL time.Duration
	admitted, refused      *lru.Cache // key → entry
	evicted                atomic.Uint64
}

type entry struct {
	out   outcome
	until time.Time
}

func newOutcomes(l Limits, now func() time.Time) *outcomes {
	o := &outcomes{now: now, successTTL: l.SuccessTTL, failureTTL: l.FailureTTL, refused: lru.New(l.FailureCacheSize)}
	o.admitted = lru.NewWithEvictionFunc(l.SuccessCacheSize, func(_ lru.Key, v any) {
		if now().Before(v.(entry).until) {
			o.evicted.Add(1)
		}
	})
	return o
}

// get returns a cached, unexpired outcome. Expired entries are left to
// be overwritten or pushed out.
func (o *outcomes) get(key string) (outcome, bool) {
	now := o.now()
	for _, c := range []*lru.Cache{o.admitted, o.refused} {
		if v, ok := c.Get(key); ok && now.Before(v.(entry).until) {
			return v.(entry).out, true
		}
	}
	return outcome{}, false
}

// put caches an outcome, unless it is transient or its cache is off. An
// admission lasts no longer than its token.
func (o *outcomes) put(key string, out outcome) {
	if out.transient {
		return
	}
	now := o.now()
	if out.err != nil {
		if o.failureTTL > 0 {
			o.refused.Add(key, entry{out: out, until: now.Add(o.failureTTL)})
		}
		return
	}
	if o.successTTL <= 0 {
		return
	}
	until := now.Add(o.successTTL)
	if !out.expires.IsZero() && out.expires.Before(until) {
		until = out.expires
	}
	if now.Before(until) {
		o.refused.Remove(key)
		o.admitted.Add(key, entry{out: out, until: until})
	}
}

func (o *outcomes) stats() Stats {
	return Stats{Admitted: o.admitted.Len(), Refused: o.refused.Len(), AdmittedEvicted: o.evicted.Load()}
}
