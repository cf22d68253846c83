package render

import (
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Summary renders a whole view as View does but keeps none of its
// elements: the Table's Elements is nil, and digest is the sum of hash
// over the elements View's Table would hold. It is for a caller that may
// not need the elements (a start-up whose kernel holds the view already):
// each entry's elements are hashed and dropped as soon as it is rendered,
// so a large view costs its owners, claims and chain users only, not
// 112 bytes an element and their keys. ok is false (and the Table nil)
// when some frontend is claimed twice: which elements View keeps then
// depends on every claim, and the caller renders the View.
//
// hash must depend on nothing but the element, and is called from
// several goroutines at once.
func (o Options) Summary(view map[string]*doormanv1.Entry, hash func(*Element) uint64) (t *Table, digest uint64, ok bool) {
	keys, _ := sortedEntries(view, nil)
	return o.summarize(keys, hash, partsFor(len(keys)))
}

// summary is what one part of a Summary renders: the digest of its
// exclusive elements, its shared elements to count (the first of each,
// across parts, goes into the digest), its chain users, its claims and
// its entries that cannot be rendered.
type summary struct {
	keys    []keyedEntry
	hash    func(*Element) uint64
	digest  uint64
	shared  []sharedElement
	users   map[string]int
	claims  []pendingClaim
	invalid []invalidEntry
}

// sharedElement is a shared element's identity and hash.
type sharedElement struct {
	id   SharedID
	hash uint64
}

// pendingClaim is a claim to add once every part is rendered.
type pendingClaim struct {
	id frontendID
	cl claimant
}

// summarize renders the sorted entries in at most n parts (at least one)
// for Summary.
func (o Options) summarize(keys []keyedEntry, hash func(*Element) uint64, n int) (*Table, uint64, bool) {
	n = max(1, n)
	parts := make([]summary, n)
	for i := range parts {
		parts[i] = summary{keys: partKeys(keys, i, n), hash: hash, users: map[string]int{}}
	}
	inParallel(n, func(i int) { parts[i].render() })
	t := &Table{Sets: Sets(), Owners: make(map[SharedID]int, len(keys)), Invalid: map[string]error{}, ChainUsers: map[string]int{},
		Claims: &Claims{owner: make(map[frontendID]claimant, len(keys)), others: map[frontendID][]claimant{}}}
	var digest uint64
	for i := range parts {
		p := &parts[i]
		for _, inv := range p.invalid {
			t.Invalid[inv.key] = inv.err
		}
		for _, c := range p.claims {
			t.Claims.add(c.id, c.cl)
		}
		for c, users := range p.users {
			t.ChainUsers[c] += users
		}
		digest += p.digest
	}
	if len(t.Claims.others) > 0 {
		return nil, 0, false
	}
	for i := range parts {
		for _, s := range parts[i].shared {
			// One lookup: the element is new when the map grew.
			n := len(t.Owners)
			t.Owners[s.id]++
			if len(t.Owners) > n {
				digest += s.hash
			}
		}
	}
	t.Chains = append(o.StaticChains(), endpointChains(t.ChainUsers)...)
	return t, digest, true
}

// render renders the part's entries one at a time into the same room,
// keeping of each only what summarize needs.
func (s *summary) render() {
	shared, claims := 0, 0
	for _, ke := range s.keys {
		sh, cl := boundShared(ke.entry)
		shared, claims = shared+sh, claims+cl
	}
	s.shared, s.claims = make([]sharedElement, 0, shared), make([]pendingClaim, 0, claims)
	b := &builder{chunk: 4096}
	for _, ke := range s.keys {
		b.elems, b.claims, b.chains, b.arena = b.elems[:0], b.claims[:0], b.chains[:0], b.arena[:0]
		if err := b.entry(ke.entry); err != nil {
			s.invalid = append(s.invalid, invalidEntry{ke.key, err})
			continue
		}
		for i := range b.elems {
			e := &b.elems[i]
			if e.Shared {
				s.shared = append(s.shared, sharedElement{e.SharedID(), s.hash(e)})
			} else {
				s.digest += s.hash(e)
			}
		}
		for _, c := range b.chains {
			s.users[c]++
		}
		for _, cl := range b.claims {
			s.claims = append(s.claims, pendingClaim{cl.id, claimant{key: ke.key, entry: ke.entry, kind: cl.Kind}})
		}
	}
}

// boundShared bounds from above how many shared elements and claims an
// entry renders to: the node's addresses; a Service's ClusterIP, its
// endpoints' hairpin pairs, and a claim for its ClusterIP, each external
// address and its nodePort.
func boundShared(e *doormanv1.Entry) (shared, claims int) {
	if n := e.GetNode(); n != nil {
		return len(n.GetNodeportAddresses()), 0
	}
	sp := e.GetServicePort()
	if sp == nil {
		return 0, 0
	}
	shared = 1 + len(sp.GetEndpoints()) + len(sp.GetClusterEndpoints()) + len(sp.GetLocalEndpoints())
	claims = 1 + len(sp.GetExternalIps()) + len(sp.GetLoadBalancerIps())
	if sp.GetNodePort() != 0 {
		claims++
	}
	return shared, claims
}
