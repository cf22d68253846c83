package render

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// A frontend is what a dispatch element answers for: an address . protocol
// . port in service-ips(6) / no-endpoint-services(6), or a protocol . port
// in service-nodeports(6) / no-endpoint-nodeports(6). ClusterIPs,
// externalIPs and LoadBalancer IPs share one address space, so two entries
// may claim the same frontend: one of them owns it (see Claims), the
// others are programmed without it.

// Frontend groups: the address space a frontend's key lives in.
const (
	groupServiceIPs4 uint8 = iota + 1
	groupServiceIPs6
	groupNodePorts4
	groupNodePorts6
)

// groupKeyLen is the length of a frontend's key in each group: address .
// protocol . port (each field padded to 4 bytes) or protocol . port.
var groupKeyLen = [...]int{groupServiceIPs4: 12, groupServiceIPs6: 24, groupNodePorts4: 8, groupNodePorts6: 8}

// setGroup names, for every set or map whose keys start with a frontend,
// the group of that frontend: a frontend's dispatch element and every
// element that hangs off it (endpoints, policy verdicts, firewall entries,
// affinity members) go with it.
var setGroup = map[string]uint8{
	MapServiceIPs: groupServiceIPs4, MapNoEndpointServices: groupServiceIPs4,
	MapServiceEndpoints: groupServiceIPs4, MapLocalInternalIPs: groupServiceIPs4, MapLocalExternalIPs: groupServiceIPs4,
	SetFirewallIPs: groupServiceIPs4, SetFirewallAllow: groupServiceIPs4, SetAffinityMembers: groupServiceIPs4,

	MapServiceIPs6: groupServiceIPs6, MapNoEndpointServices6: groupServiceIPs6,
	MapServiceEndpoints6: groupServiceIPs6, MapLocalInternalIPs6: groupServiceIPs6, MapLocalExternalIPs6: groupServiceIPs6,
	SetFirewallIPs6: groupServiceIPs6, SetFirewallAllow6: groupServiceIPs6, SetAffinityMembers6: groupServiceIPs6,

	MapServiceNodePorts: groupNodePorts4, MapNoEndpointNodePorts: groupNodePorts4,
	MapNodePortEndpoints: groupNodePorts4, MapLocalInternalNodePorts: groupNodePorts4, MapLocalExternalNodePorts: groupNodePorts4,
	SetNodePortAffinityMembers: groupNodePorts4,

	MapServiceNodePorts6: groupNodePorts6, MapNoEndpointNodePorts6: groupNodePorts6,
	MapNodePortEndpoints6: groupNodePorts6, MapLocalInternalNodePorts6: groupNodePorts6, MapLocalExternalNodePorts6: groupNodePorts6,
	SetNodePortAffinityMembers6: groupNodePorts6,
}

// frontendID identifies a frontend without allocating: its group and key
// (at most an IPv6 address . protocol . port).
type frontendID struct {
	group uint8
	key   [24]byte
}

func newFrontendID(group uint8, key []byte) frontendID {
	f := frontendID{group: group}
	copy(f.key[:], key[:groupKeyLen[group]])
	return f
}

// elementFrontend returns the frontend an exclusive element belongs to;
// false for elements of no frontend (shared elements, Pod CIDRs).
func elementFrontend(e Element) (frontendID, bool) {
	g, ok := setGroup[e.Set]
	if !ok || e.Shared || len(e.Key) < groupKeyLen[g] {
		return frontendID{}, false
	}
	return newFrontendID(g, e.Key), true
}

// String prints a frontend as "10.96.0.10:53/udp", "[fd00::1]:80/tcp" or
// "30080/tcp".
func (f frontendID) String() string {
	switch f.group {
	case groupServiceIPs4, groupServiceIPs6:
		n := 4
		if f.group == groupServiceIPs6 {
			n = 16
		}
		a, _ := netip.AddrFromSlice(f.key[:n])
		port := binary.BigEndian.Uint16(f.key[n+4:])
		return netip.AddrPortFrom(a, port).String() + "/" + formatField(TypeProto, f.key[n:n+1])
	case groupNodePorts4, groupNodePorts6:
		return strconv.Itoa(int(binary.BigEndian.Uint16(f.key[4:]))) + "/" + formatField(TypeProto, f.key[:1])
	}
	return fmt.Sprintf("frontend(%d %x)", f.group, f.key)
}

// ClaimKind is what an entry claims a frontend as.
type ClaimKind uint8

// Claim kinds, by precedence: a ClusterIP or nodePort claim takes a
// frontend from an externalIP or LoadBalancer IP claim, whatever the keys'
// order. ClusterIPs are allocated by the API server, which keeps them
// unique; externalIPs and LoadBalancer IPs are whatever a Service's author
// (or a load balancer controller) wrote, so they must never displace one.
const (
	ClaimClusterIP ClaimKind = iota
	ClaimNodePort
	ClaimExternalIP
	ClaimLoadBalancerIP
)

func (k ClaimKind) String() string {
	switch k {
	case ClaimClusterIP:
		return "ClusterIP"
	case ClaimNodePort:
		return "nodePort"
	case ClaimExternalIP:
		return "externalIP"
	case ClaimLoadBalancerIP:
		return "load balancer IP"
	}
	return fmt.Sprintf("claim(%d)", uint8(k))
}

// rank orders claim kinds: lower wins.
func (k ClaimKind) rank() int {
	if k >= ClaimExternalIP {
		return 1
	}
	return 0
}

// Claim is one frontend an entry renders to, and as what.
type Claim struct {
	id   frontendID
	Kind ClaimKind
}

// String prints the claim: "externalIP 10.96.0.10:53/udp".
func (c Claim) String() string { return c.Kind.String() + " " + c.id.String() }

// claimant is one entry's claim on a frontend, with the entry's value (to
// render it again when it gains or loses the frontend).
type claimant struct {
	key   string
	entry *doormanv1.Entry
	kind  ClaimKind
}

// before reports whether c takes precedence over o: a ClusterIP or
// nodePort claim before an external one, then the first key. Between two
// externalIP or LoadBalancer IP claims upstream kube-proxy has no rule (in
// nftables mode the last Service written in a sync, in map order, takes
// the element): the first key gives every node the same answer.
func (c claimant) before(o claimant) bool {
	if r, s := c.kind.rank(), o.kind.rank(); r != s {
		return r < s
	}
	return c.key < o.key
}

// Claims records, for each frontend of a table, the entries that claim it
// and which one owns it. The owner's elements for the frontend are in the
// table; every other claimant is programmed without that frontend (and
// the rest of the entry as usual) and reported by Refused. When the owner
// changes or goes away, Plan hands the frontend to the next claimant in
// the same update. Which entry owns a frontend depends only on the
// claimants, never on the order they arrived in, so View and a sequence of
// Plans always agree.
type Claims struct {
	owner map[frontendID]claimant
	// others holds, for contested frontends only, every claimant but the
	// owner, in no order.
	others map[frontendID][]claimant
}

// NewClaims returns an empty record, as for an empty table.
func NewClaims() *Claims {
	return &Claims{owner: map[frontendID]claimant{}, others: map[frontendID][]claimant{}}
}

// add records one more claim (View).
func (c *Claims) add(id frontendID, cl claimant) {
	cur, ok := c.owner[id]
	switch {
	case !ok:
		c.owner[id] = cl
	case cl.before(cur):
		c.owner[id] = cl
		c.others[id] = append(c.others[id], cur)
	default:
		c.others[id] = append(c.others[id], cl)
	}
}

// holds reports whether key's claim on a frontend is recorded, owned or
// not.
func (c *Claims) holds(key string, id frontendID) bool {
	if c.owner[id].key == key {
		return true
	}
	for _, o := range c.others[id] {
		if o.key == key {
			return true
		}
	}
	return false
}

// ownerOf returns the key owning a frontend ("" for none).
func (c *Claims) ownerOf(id frontendID) string { return c.owner[id].key }

// Refused lists the entries programmed without some of their frontends,
// each with an error naming the frontends and the entries that own them;
// nil when there are none. Its cost is that of the contested frontends.
func (c *Claims) Refused() map[string]error {
	if c == nil || len(c.others) == 0 {
		return nil
	}
	lost := map[string][]string{}
	for id, list := range c.others {
		owner := c.owner[id]
		for _, cl := range list {
			lost[cl.key] = append(lost[cl.key], fmt.Sprintf("%s %s is the %s of %q", cl.kind, id, owner.kind, owner.key))
		}
	}
	out := make(map[string]error, len(lost))
	for key, msgs := range lost {
		sort.Strings(msgs)
		out[key] = fmt.Errorf("entry %q: %s", key, strings.Join(msgs, "; "))
	}
	return out
}

// Change moves one view entry from Old to New (nil: the key is absent).
type Change struct {
	Key string
	Old *doormanv1.Entry // nil when the key is new
	New *doormanv1.Entry // nil when the key is removed
}

// Move is what one entry owns in the table before and after an update:
// Diff(Old, New) moves the kernel. An entry the update does not change
// moves too when it gains or loses a contested frontend.
type Move struct {
	Key      string
	Old, New Objects
}

// Plan is an update rendered against Claims, not yet recorded.
type Plan struct {
	// Moves: one per change, in order, then one per other entry whose
	// frontends change hands.
	Moves []Move
	// after: for each frontend the changes touch, its claimants after the
	// update, owner first (none: nobody claims it any more).
	after map[frontendID][]claimant
}

// Plan renders each change's old and new value and decides who owns the
// frontends they touch, taking into account the claims of every other
// entry: a change that frees a frontend hands it to the next claimant, one
// that claims a frontend with precedence takes it from its owner, and both
// entries get a Move. c is not modified: Commit records the plan once the
// kernel took it. The cost is that of the changed entries (and of the
// few entries whose frontends change hands), not of the table.
func (c *Claims) Plan(changes []Change) (*Plan, error) {
	changed, err := changedKeys(changes)
	if err != nil {
		return nil, err
	}
	pl := &planner{
		claims:  c,
		changed: changed,
		plan:    &Plan{Moves: make([]Move, 0, len(changes)), after: map[frontendID][]claimant{}},
	}
	for _, ch := range changes {
		if err := pl.move(ch); err != nil {
			return nil, err
		}
	}
	if err := pl.moveBystanders(pl.electOwners()); err != nil {
		return nil, err
	}
	pl.keepOwned()
	return pl.plan, nil
}

// changedKeys is the set of keys changes change; a key changed twice is
// an error.
func changedKeys(changes []Change) (map[string]bool, error) {
	changed := make(map[string]bool, len(changes))
	for _, ch := range changes {
		if changed[ch.Key] {
			return nil, fmt.Errorf("entry %q changed twice in one update", ch.Key)
		}
		changed[ch.Key] = true
	}
	return changed, nil
}

// planner builds one Plan of claims.
type planner struct {
	claims  *Claims
	changed map[string]bool // the keys the update changes
	plan    *Plan
}

// claimants returns the claimants of id after the update as planned so
// far: at first, its owner and other claimants but for the entries the
// update changes.
func (pl *planner) claimants(id frontendID) []claimant {
	if list, ok := pl.plan.after[id]; ok {
		return list
	}
	var list []claimant
	if cur, ok := pl.claims.owner[id]; ok && !pl.changed[cur.key] {
		list = append(list, cur)
	}
	for _, o := range pl.claims.others[id] {
		if !pl.changed[o.key] {
			list = append(list, o)
		}
	}
	return list
}

// move renders ch's old and new value and plans its claims: the old
// value's are dropped, the new value's added.
func (pl *planner) move(ch Change) error {
	oldObjs, err := Entry(ch.Old)
	if err != nil {
		return fmt.Errorf("old value of %w", err)
	}
	newObjs, err := Entry(ch.New)
	if err != nil {
		return err
	}
	for _, cl := range oldObjs.Claims {
		// An old value the table does not hold would delete nothing
		// (or what another entry owns): refuse it, as the kernel
		// refuses to delete an element it does not have.
		if !pl.claims.holds(ch.Key, cl.id) {
			return fmt.Errorf("entry %q: old value claims %s, which the table does not record for it", ch.Key, cl)
		}
		pl.plan.after[cl.id] = pl.claimants(cl.id)
	}
	for _, cl := range newObjs.Claims {
		pl.plan.after[cl.id] = append(pl.claimants(cl.id), claimant{key: ch.Key, entry: ch.New, kind: cl.Kind})
	}
	pl.plan.Moves = append(pl.plan.Moves, Move{Key: ch.Key, Old: oldObjs, New: newObjs})
	return nil
}

// electOwners puts each touched frontend's owner first among its
// claimants, and returns the unchanged entries that gain or lose a
// frontend by it (bystanders): they move too.
func (pl *planner) electOwners() (bystanders map[string]*doormanv1.Entry) {
	bystanders = map[string]*doormanv1.Entry{}
	for id, list := range pl.plan.after {
		best := 0
		for i := range list {
			if list[i].before(list[best]) {
				best = i
			}
		}
		if best != 0 {
			list[0], list[best] = list[best], list[0]
		}
		prev, had := pl.claims.owner[id]
		switch {
		case len(list) > 0 && (!had || list[0].key != prev.key):
			if !pl.changed[list[0].key] {
				bystanders[list[0].key] = list[0].entry
			}
			if had && !pl.changed[prev.key] {
				bystanders[prev.key] = prev.entry
			}
		case len(list) == 0 && had && !pl.changed[prev.key]:
			bystanders[prev.key] = prev.entry
		}
	}
	return bystanders
}

// moveBystanders adds a Move for each bystander, in the order of their
// keys, from and to its unchanged value.
func (pl *planner) moveBystanders(bystanders map[string]*doormanv1.Entry) error {
	for _, key := range slices.Sorted(maps.Keys(bystanders)) {
		objs, err := Entry(bystanders[key])
		if err != nil {
			return err
		}
		pl.plan.Moves = append(pl.plan.Moves, Move{Key: key, Old: objs, New: objs})
	}
	return nil
}

// keepOwned takes out of each Move the frontends its entry does not own:
// before the update from its old objects, after it from its new ones.
func (pl *planner) keepOwned() {
	for i := range pl.plan.Moves {
		m := &pl.plan.Moves[i]
		m.Old = m.Old.owned(m.Key, pl.claims.ownerOf)
		m.New = m.New.owned(m.Key, pl.ownerAfter)
	}
}

// ownerAfter is the key of id's owner after the update ("" for none).
func (pl *planner) ownerAfter(id frontendID) string {
	if list, ok := pl.plan.after[id]; ok {
		if len(list) == 0 {
			return ""
		}
		return list[0].key
	}
	return pl.claims.ownerOf(id)
}

// Commit records a plan the kernel took.
func (c *Claims) Commit(p *Plan) {
	for id, list := range p.after {
		switch len(list) {
		case 0:
			delete(c.owner, id)
			delete(c.others, id)
		case 1:
			c.owner[id] = list[0]
			delete(c.others, id)
		default:
			c.owner[id] = list[0]
			c.others[id] = slices.Clone(list[1:])
		}
	}
}

// owned returns the objects without the frontends key does not own
// (ownerOf names each frontend's owner).
func (o Objects) owned(key string, ownerOf func(frontendID) string) Objects {
	var lost []frontendID
	for _, cl := range o.Claims {
		if ownerOf(cl.id) != key {
			lost = append(lost, cl.id)
		}
	}
	if len(lost) == 0 {
		return o
	}
	return o.without(lost)
}

// without returns the objects minus every element of the lost frontends,
// and minus the chains only those elements jumped to. Claims stay: they
// are what the entry asks for.
func (o Objects) without(lost []frontendID) Objects {
	out := Objects{Elements: make([]Element, 0, len(o.Elements)), Claims: o.Claims}
	used := map[string]bool{}
	for _, e := range o.Elements {
		if id, ok := elementFrontend(e); ok && slices.Contains(lost, id) {
			continue
		}
		out.Elements = append(out.Elements, e)
		if e.Verdict != nil && e.Verdict.Chain != "" {
			used[e.Verdict.Chain] = true
		}
	}
	for _, c := range o.Chains {
		if used[c] {
			out.Chains = append(out.Chains, c)
		}
	}
	return out
}
