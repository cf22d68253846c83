package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Element is one element of a set or map, in the kernel's byte layout:
// every field of a concatenation padded to 4 bytes, the numgen index in host
// byte order (numgen writes it so), addresses and ports in network order.
type Element struct {
	Set string
	Key []byte
	// KeyEnd is the inclusive end of a range in a concatenated interval set
	// (firewall-allow); nil elsewhere.
	KeyEnd []byte
	// IntervalEnd marks the end element of a range in a single-field
	// interval set (pod-cidrs, service-cidrs): Key is the first address after the range.
	IntervalEnd bool
	// Value of a map element ("address . port"); nil for sets and vmaps.
	Value []byte
	// Verdict of a verdict-map element. Verdicts are shared between
	// elements: never modify one.
	Verdict *expr.Verdict
	// Shared elements may be owned by several entries (a ClusterIP with
	// several ports, an endpoint address in hairpin-pairs); the dataplane
	// counts owners and removes the element with the last one. Other
	// elements have exactly one owner.
	Shared bool
}

// ID identifies the element within the table: set name and key (and the
// range end of interval elements).
func (e Element) ID() string {
	n := len(e.Set) + 1 + len(e.Key)
	if e.KeyEnd != nil {
		n += 1 + len(e.KeyEnd)
	}
	if e.IntervalEnd {
		n++
	}
	b := make([]byte, 0, n)
	b = append(append(append(b, e.Set...), 0), e.Key...)
	if e.KeyEnd != nil {
		b = append(append(b, 1), e.KeyEnd...)
	}
	if e.IntervalEnd {
		b = append(b, 2)
	}
	return string(b)
}

// SharedID identifies a shared element without allocating: the set's
// index in Sets and the key (shared keys are at most two IPv6 addresses).
type SharedID struct {
	set uint8
	n   uint8
	key [32]byte
}

// SharedID returns the element's compact identity; only meaningful for
// Shared elements.
func (e Element) SharedID() SharedID {
	id := SharedID{set: uint8(setIndex[e.Set]), n: uint8(len(e.Key))}
	copy(id.key[:], e.Key)
	return id
}

// SameValue reports whether two elements with the same ID map to the same
// value.
func (e Element) SameValue(o Element) bool {
	if !bytes.Equal(e.Value, o.Value) {
		return false
	}
	if (e.Verdict == nil) != (o.Verdict == nil) {
		return false
	}
	return e.Verdict == nil || (e.Verdict.Kind == o.Verdict.Kind && e.Verdict.Chain == o.Verdict.Chain)
}

// Objects are what one view entry owns in the table.
type Objects struct {
	Elements []Element
	// Chains are the per-endpoint-count chains the elements jump to; they
	// must exist before the elements are added.
	Chains []string
	// Claims are the frontends the entry renders to (ClusterIP, each
	// external address, nodePort); Elements holds those of all of them,
	// whoever owns them (see Claims.Plan).
	Claims []Claim
}

// Entry renders one view entry: the Node entry gives the NodePort
// addresses, Pod CIDRs and Service CIDRs, a ServicePort entry its dispatch, endpoint,
// policy, firewall, affinity and hairpin elements. A nil entry owns
// nothing. Bad input gets an error naming the entry.
func Entry(e *doormanv1.Entry) (Objects, error) {
	if e == nil {
		return Objects{}, nil
	}
	b := &builder{chunk: 1024}
	if err := b.entry(e); err != nil {
		return Objects{}, err
	}
	return Objects{Elements: b.elems, Chains: b.chains, Claims: b.claims}, nil
}

// builder collects the elements of one or more entries. Keys and values
// are carved from large byte chunks, so an element costs no allocation of
// its own.
type builder struct {
	elems  []Element
	chains []string
	claims []Claim
	arena  []byte
	chunk  int
}

// take returns an empty slice with room for n bytes.
func (b *builder) take(n int) []byte {
	if cap(b.arena)-len(b.arena) < n {
		b.arena = make([]byte, 0, max(b.chunk, n))
	}
	l := len(b.arena)
	b.arena = b.arena[:l+n]
	return b.arena[l : l : l+n]
}

func (b *builder) add(e Element) { b.elems = append(b.elems, e) }

// claim records that the entry renders to a frontend.
func (b *builder) claim(group uint8, key []byte, kind ClaimKind) {
	b.claims = append(b.claims, Claim{id: newFrontendID(group, key), Kind: kind})
}

func (b *builder) gotoSpec(set string, key []byte, s ChainSpec) {
	name := chainName(s)
	b.add(Element{Set: set, Key: key, Verdict: gotoChain(name)})
	b.useChain(name)
}

// verdictSpec adds an affinity member element: a jump to an endpoint's
// affinity chain (which returns when it does not remember the client), a
// goto to its pick chain.
func (b *builder) verdictSpec(set string, key []byte, s ChainSpec) {
	name := chainName(s)
	v := gotoChain(name)
	if s.Kind == KindAffinity {
		v = jumpChain(name)
	}
	b.add(Element{Set: set, Key: key, Verdict: v})
	b.useChain(name)
}

// useChain records a chain the entry's elements refer to.
func (b *builder) useChain(name string) {
	for _, c := range b.chains {
		if c == name {
			return
		}
	}
	b.chains = append(b.chains, name)
}

func (b *builder) entry(e *doormanv1.Entry) error {
	switch v := e.GetValue().(type) {
	case *doormanv1.Entry_Node:
		if err := b.node(v.Node); err != nil {
			return fmt.Errorf("entry %q: %w", e.GetKey(), err)
		}
		return nil
	case *doormanv1.Entry_ServicePort:
		if err := b.servicePort(v.ServicePort); err != nil {
			return fmt.Errorf("entry %q: %w", e.GetKey(), err)
		}
		return nil
	}
	return fmt.Errorf("entry %q: no value", e.GetKey())
}

func (b *builder) node(n *doormanv1.Node) error {
	for _, s := range n.GetNodeportAddresses() {
		// The shared parse (doormanv1.ParseAddr) refuses an IPv4-mapped
		// address as the agent's validation does, rather than unmapping
		// it into one that was not sent.
		a, err := doormanv1.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("nodeport address: %w", err)
		}
		set := SetNodePortIPs
		if a.Is6() {
			set = SetNodePortIPs6
		}
		b.add(Element{Set: set, Key: a.AsSlice(), Shared: true})
	}
	if err := b.cidrSets("pod CIDR", n.GetPodCidrs(), SetPodCIDRs, SetPodCIDRs6); err != nil {
		return err
	}
	return b.cidrSets("service CIDR", n.GetServiceCidrs(), SetServiceCIDRs, SetServiceCIDRs6)
}

// cidrSets adds CIDRs to a pair of single-field interval sets, IPv4 and
// IPv6 (pod-cidrs, service-cidrs): one start and one end element per
// range, overlapping and touching ranges merged.
func (b *builder) cidrSets(what string, list []string, set4, set6 string) error {
	var cidrs [2][]addrRange // IPv4, IPv6
	for _, s := range list {
		// An IPv4-mapped prefix is refused (doormanv1.ParsePrefix): neither
		// family's set can hold it: in the IPv6 set it would match no
		// packet, as an IPv4 prefix it is not what was sent.
		p, err := doormanv1.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		p = p.Masked()
		i := 0
		if p.Addr().Is6() {
			i = 1
		}
		cidrs[i] = append(cidrs[i], addrRange{p.Addr(), lastAddr(p)})
	}
	// An interval set holds no two overlapping or touching intervals (the
	// kernel refuses the second with EEXIST): merge them first.
	for i, set := range []string{set4, set6} {
		for _, r := range mergeRanges(cidrs[i]) {
			b.add(Element{Set: set, Key: r.first.AsSlice()})
			// The end element holds the first address after the range; a
			// range reaching the top of the address space has none.
			if next := r.last.Next(); next.IsValid() {
				b.add(Element{Set: set, Key: next.AsSlice(), IntervalEnd: true})
			}
		}
	}
	return nil
}

// addrRange is a range of addresses of one family, first to last
// included.
type addrRange struct{ first, last netip.Addr }

// mergeRanges returns the ranges sorted, with those that overlap or touch
// merged into one: the elements of an interval set must not overlap (the
// kernel refuses them with EEXIST), and the API server accepts overlapping
// CIDRs (loadBalancerSourceRanges 10.0.0.0/8 and 10.250.0.0/16).
func mergeRanges(rs []addrRange) []addrRange {
	if len(rs) < 2 {
		return rs
	}
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(x, y addrRange) int { return x.first.Compare(y.first) })
	out := sorted[:1]
	for _, r := range sorted[1:] {
		cur := &out[len(out)-1]
		next := cur.last.Next() // invalid: cur reaches the top
		if !next.IsValid() || r.first.Compare(next) <= 0 {
			if r.last.Compare(cur.last) > 0 {
				cur.last = r.last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	for i := range a {
		bits := p.Bits() - i*8
		switch {
		case bits >= 8:
		case bits <= 0:
			a[i] = 0xff
		default:
			a[i] |= 0xff >> bits
		}
	}
	last, _ := netip.AddrFromSlice(a)
	return last
}

// per-family names.
type familyNames struct {
	clusterIPs, serviceIPs, serviceNodePorts, serviceEndpoints, nodePortEndpoints string
	noEndpointServices, noEndpointNodePorts                                       string
	localInternalIPs, localExternalIPs, localInternalNodePorts                    string
	localExternalNodePorts, firewallIPs, firewallAllow                            string
	affinityMembers, nodePortAffinityMembers, hairpinPairs                        string
	addrLen                                                                       int
	serviceGroup, nodePortGroup                                                   uint8
}

var (
	names4 = familyNames{SetClusterIPs, MapServiceIPs, MapServiceNodePorts, MapServiceEndpoints, MapNodePortEndpoints,
		MapNoEndpointServices, MapNoEndpointNodePorts,
		MapLocalInternalIPs, MapLocalExternalIPs, MapLocalInternalNodePorts,
		MapLocalExternalNodePorts, SetFirewallIPs, SetFirewallAllow,
		SetAffinityMembers, SetNodePortAffinityMembers, SetHairpinPairs, 4,
		groupServiceIPs4, groupNodePorts4}
	names6 = familyNames{SetClusterIPs6, MapServiceIPs6, MapServiceNodePorts6, MapServiceEndpoints6, MapNodePortEndpoints6,
		MapNoEndpointServices6, MapNoEndpointNodePorts6,
		MapLocalInternalIPs6, MapLocalExternalIPs6, MapLocalInternalNodePorts6,
		MapLocalExternalNodePorts6, SetFirewallIPs6, SetFirewallAllow6,
		SetAffinityMembers6, SetNodePortAffinityMembers6, SetHairpinPairs6, 16,
		groupServiceIPs6, groupNodePorts6}
)

func protoNumber(p doormanv1.Protocol) (byte, error) {
	switch p {
	case doormanv1.Protocol_PROTOCOL_TCP:
		return unix.IPPROTO_TCP, nil
	case doormanv1.Protocol_PROTOCOL_UDP:
		return unix.IPPROTO_UDP, nil
	case doormanv1.Protocol_PROTOCOL_SCTP:
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("protocol %v not supported", p)
}

// parseAddr reads an address of the entry's family as the agent's
// validation does (doormanv1.ParseAddr: no zone, no IPv4-mapped form).
func parseAddr(s string, v6 bool) (netip.Addr, error) {
	a, err := doormanv1.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Is6() != v6 {
		return netip.Addr{}, fmt.Errorf("%q is not an address of the entry's family", s)
	}
	return a, nil
}

func checkPort(what string, p uint32) error {
	if p == 0 || p > 65535 {
		return fmt.Errorf("%s %d out of range", what, p)
	}
	return nil
}

// Field encoders: each field of a concatenation takes a multiple of 4 bytes.
func putAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}
func putProto(b []byte, p byte) []byte  { return append(b, p, 0, 0, 0) }
func putPort(b []byte, p uint32) []byte { return append(b, byte(p>>8), byte(p), 0, 0) }
func putIndex(b []byte, i int) []byte   { return binary.NativeEndian.AppendUint32(b, uint32(i)) }

// Verdicts and chain names are interned: a view of 100,000 Services holds a
// handful of distinct ones.
var (
	verdicts     sync.Map // chain name → *expr.Verdict (goto)
	jumpVerdicts sync.Map // chain name → *expr.Verdict (jump)
	chainNames   sync.Map // ChainSpec → string
	dropVerdict  = &expr.Verdict{Kind: expr.VerdictDrop}
)

func gotoChain(name string) *expr.Verdict {
	if v, ok := verdicts.Load(name); ok {
		return v.(*expr.Verdict)
	}
	v, _ := verdicts.LoadOrStore(name, &expr.Verdict{Kind: expr.VerdictGoto, Chain: name})
	return v.(*expr.Verdict)
}

func jumpChain(name string) *expr.Verdict {
	if v, ok := jumpVerdicts.Load(name); ok {
		return v.(*expr.Verdict)
	}
	v, _ := jumpVerdicts.LoadOrStore(name, &expr.Verdict{Kind: expr.VerdictJump, Chain: name})
	return v.(*expr.Verdict)
}

func chainName(s ChainSpec) string {
	if n, ok := chainNames.Load(s); ok {
		return n.(string)
	}
	n, _ := chainNames.LoadOrStore(s, s.Name())
	return n.(string)
}

type endpoint struct {
	addr netip.Addr
	port uint32
}

func parseEndpoints(list []*doormanv1.Endpoint, v6 bool, what string) ([]endpoint, error) {
	if len(list) == 0 {
		return nil, nil
	}
	eps := make([]endpoint, 0, len(list))
	for _, ep := range list {
		a, err := parseAddr(ep.GetIp(), v6)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, ep.GetIp(), err)
		}
		if err := checkPort(what+" port", ep.GetPort()); err != nil {
			return nil, fmt.Errorf("%s %q: %w", what, ep.GetIp(), err)
		}
		eps = append(eps, endpoint{a, ep.GetPort()})
	}
	return eps, nil
}

// externalFrontend is an externalIP or LoadBalancer IP.
type externalFrontend struct {
	addr netip.Addr
	lb   bool
}

func (b *builder) servicePort(sp *doormanv1.ServicePort) error {
	var names familyNames
	var v6 bool
	switch sp.GetFamily() {
	case doormanv1.IPFamily_IP_FAMILY_IPV4:
		names = names4
	case doormanv1.IPFamily_IP_FAMILY_IPV6:
		names, v6 = names6, true
	default:
		return fmt.Errorf("IP family %v not supported", sp.GetFamily())
	}
	proto, err := protoNumber(sp.GetProtocol())
	if err != nil {
		return err
	}
	if err := checkPort("port", sp.GetPort()); err != nil {
		return err
	}
	if np := sp.GetNodePort(); np != 0 {
		if err := checkPort("nodePort", np); err != nil {
			return err
		}
	}
	if hc := sp.GetHealthCheckNodePort(); hc != 0 {
		if err := checkPort("healthCheckNodePort", hc); err != nil {
			return err
		}
	}
	aff := sp.GetAffinityTimeoutSeconds()
	if aff > AffinityTimeoutMax {
		return fmt.Errorf("affinity timeout %ds above %ds", aff, AffinityTimeoutMax)
	}
	eps, err := parseEndpoints(sp.GetEndpoints(), v6, "endpoint")
	if err != nil {
		return err
	}
	// The cluster-wide set, for external traffic under Cluster policy and
	// for traffic from Pods and the node to external addresses: with
	// internalTrafficPolicy Local, eps holds only this node's endpoints.
	clusterEps := eps
	if sp.GetInternalPolicyLocal() {
		if clusterEps, err = parseEndpoints(sp.GetClusterEndpoints(), v6, "cluster endpoint"); err != nil {
			return err
		}
	}
	local := sp.GetExternalPolicyLocal()
	var localEps []endpoint
	if local {
		if localEps, err = parseEndpoints(sp.GetLocalEndpoints(), v6, "local endpoint"); err != nil {
			return err
		}
	}
	var cip netip.Addr
	if s := sp.GetClusterIp(); s != "" {
		if cip, err = parseAddr(s, v6); err != nil {
			return fmt.Errorf("clusterIP: %w", err)
		}
	}
	var externals []externalFrontend
	addExternal := func(what string, list []string, lb bool) error {
		for _, s := range list {
			a, err := parseAddr(s, v6)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			dup := a == cip
			for i := range externals {
				if externals[i].addr == a {
					externals[i].lb = externals[i].lb || lb
					dup = true
				}
			}
			if !dup {
				externals = append(externals, externalFrontend{a, lb})
			}
		}
		return nil
	}
	if err := addExternal("externalIP", sp.GetExternalIps(), false); err != nil {
		return err
	}
	if err := addExternal("load balancer IP", sp.GetLoadBalancerIps(), true); err != nil {
		return err
	}
	var ranges []addrRange
	for _, s := range sp.GetLoadBalancerSourceRanges() {
		p, err := doormanv1.ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("load balancer source range: %w", err)
		}
		if p.Addr().Is6() != v6 {
			return fmt.Errorf("load balancer source range %q is not of the entry's family", s)
		}
		p = p.Masked()
		ranges = append(ranges, addrRange{p.Addr(), lastAddr(p)})
	}
	// One interval per frontend for overlapping or touching ranges.
	ranges = mergeRanges(ranges)

	kc, kcc, kl := len(eps), len(clusterEps), len(localEps)
	hasExternal := len(externals) > 0 || sp.GetNodePort() != 0
	// Without endpoints every frontend refuses new connections. With
	// internalTrafficPolicy Local the ClusterIP drops instead, as upstream,
	// while the Service may have endpoints on other nodes: always, unless
	// the cluster-wide set (sent when the Service has external addresses)
	// shows it has none at all. External frontends use the cluster-wide
	// set: when that is empty there is no endpoint anywhere.
	none := gotoChain(ChainReject)
	if sp.GetInternalPolicyLocal() && (!hasExternal || kcc > 0) {
		none = dropVerdict
	}
	noneExternal := gotoChain(ChainReject)
	addrLen := names.addrLen
	frontendLen := addrLen + 8

	endpointsOf := func(set string, frontend []byte, list []endpoint, offset int) {
		for i, ep := range list {
			key := putIndex(append(b.take(len(frontend)+4), frontend...), offset+i)
			value := putPort(putAddr(b.take(addrLen+4), ep.addr), ep.port)
			b.add(Element{Set: set, Key: key, Value: value})
		}
	}
	// Affinity members: for each endpoint at index i of a frontend's
	// endpoint maps, i → jump to its affinity chain and
	// affinityPickOffset + i → goto its pick chain.
	members := func(set string, frontend []byte, list []endpoint, offset int) {
		if aff == 0 {
			return
		}
		for i, ep := range list {
			e := AffinityEndpoint{Proto: proto, Addr: ep.addr, Port: uint16(ep.port)}
			for _, kind := range []ChainKind{KindAffinity, KindAffinityPick} {
				idx := offset + i
				if kind == KindAffinityPick {
					idx += affinityPickOffset
				}
				key := putIndex(append(b.take(len(frontend)+4), frontend...), idx)
				b.verdictSpec(set, key, ChainSpec{Kind: kind, Affinity: aff, Endpoint: e})
			}
		}
	}

	if cip.IsValid() {
		b.add(Element{Set: names.clusterIPs, Key: putAddr(b.take(addrLen), cip), Shared: true})
		f := putPort(putProto(putAddr(b.take(frontendLen), cip), proto), sp.GetPort())
		b.claim(names.serviceGroup, f, ClaimClusterIP)
		if kc == 0 {
			b.add(Element{Set: names.noEndpointServices, Key: f, Verdict: none})
		} else {
			b.gotoSpec(names.serviceIPs, f, ChainSpec{Kind: KindService, K: kc, Affinity: aff})
			endpointsOf(names.serviceEndpoints, f, eps, 0)
			members(names.affinityMembers, f, eps, 0)
		}
	}

	for _, x := range externals {
		f := putPort(putProto(putAddr(b.take(frontendLen), x.addr), proto), sp.GetPort())
		kind := ClaimExternalIP
		if x.lb {
			kind = ClaimLoadBalancerIP
		}
		b.claim(names.serviceGroup, f, kind)
		if x.lb && len(ranges) > 0 {
			b.add(Element{Set: names.firewallIPs, Key: f})
			for _, r := range ranges {
				start := putAddr(append(b.take(frontendLen+addrLen), f...), r.first)
				end := putAddr(append(b.take(frontendLen+addrLen), f...), r.last)
				b.add(Element{Set: names.firewallAllow, Key: start, KeyEnd: end})
			}
		}
		switch {
		case kcc == 0:
			b.add(Element{Set: names.noEndpointServices, Key: f, Verdict: noneExternal})
			continue
		case !local:
			b.gotoSpec(names.serviceIPs, f, ChainSpec{Kind: KindExternal, K: kcc, Affinity: aff})
		default:
			b.add(Element{Set: names.serviceIPs, Key: f, Verdict: gotoChain(ChainLocalIPs)})
			b.gotoSpec(names.localInternalIPs, f, ChainSpec{Kind: KindService, K: kcc, Affinity: aff})
			if kl == 0 {
				b.add(Element{Set: names.localExternalIPs, Key: f, Verdict: dropVerdict})
			} else {
				b.gotoSpec(names.localExternalIPs, f, ChainSpec{Kind: KindLocal, K: kl, Affinity: aff})
				endpointsOf(names.serviceEndpoints, f, localEps, localOffset)
				members(names.affinityMembers, f, localEps, localOffset)
			}
		}
		endpointsOf(names.serviceEndpoints, f, clusterEps, 0)
		members(names.affinityMembers, f, clusterEps, 0)
	}

	if np := sp.GetNodePort(); np != 0 {
		f := putPort(putProto(b.take(8), proto), np)
		b.claim(names.nodePortGroup, f, ClaimNodePort)
		switch {
		case kcc == 0:
			b.add(Element{Set: names.noEndpointNodePorts, Key: f, Verdict: noneExternal})
		case !local:
			b.gotoSpec(names.serviceNodePorts, f, ChainSpec{Kind: KindNodePort, K: kcc, Affinity: aff})
			endpointsOf(names.nodePortEndpoints, f, clusterEps, 0)
			members(names.nodePortAffinityMembers, f, clusterEps, 0)
		default:
			b.add(Element{Set: names.serviceNodePorts, Key: f, Verdict: gotoChain(ChainLocalNodePorts)})
			b.gotoSpec(names.localInternalNodePorts, f, ChainSpec{Kind: KindNodePortInternal, K: kcc, Affinity: aff})
			if kl == 0 {
				b.add(Element{Set: names.localExternalNodePorts, Key: f, Verdict: dropVerdict})
			} else {
				b.gotoSpec(names.localExternalNodePorts, f, ChainSpec{Kind: KindNodePortLocal, K: kl, Affinity: aff})
				endpointsOf(names.nodePortEndpoints, f, localEps, localOffset)
				members(names.nodePortAffinityMembers, f, localEps, localOffset)
			}
			endpointsOf(names.nodePortEndpoints, f, clusterEps, 0)
			members(names.nodePortAffinityMembers, f, clusterEps, 0)
		}
	}

	// Hairpin: one "address . address" element per endpoint address the
	// node may DNAT to.
	if kc > 0 || kcc > 0 || kl > 0 {
		for _, a := range distinctAddrs(eps, clusterEps, localEps) {
			b.add(Element{Set: names.hairpinPairs, Key: putAddr(putAddr(b.take(2*addrLen), a), a), Shared: true})
		}
	}
	return nil
}

// distinctAddrs lists the endpoint addresses of the lists once each.
func distinctAddrs(lists ...[]endpoint) []netip.Addr {
	n := 0
	for _, list := range lists {
		n += len(list)
	}
	out := make([]netip.Addr, 0, n)
	if n <= 16 {
		for _, list := range lists {
			for _, ep := range list {
				if !slices.Contains(out, ep.addr) {
					out = append(out, ep.addr)
				}
			}
		}
		return out
	}
	seen := make(map[netip.Addr]bool, n)
	for _, list := range lists {
		for _, ep := range list {
			if !seen[ep.addr] {
				seen[ep.addr] = true
				out = append(out, ep.addr)
			}
		}
	}
	return out
}

// Diff returns what moves the table from old's objects to new's: elements
// to delete and elements to add. An element whose value changed is in both
// (the kernel has no in-place update of a map element).
func Diff(old, new Objects) (del, add []Element) {
	if len(old.Elements) == 0 {
		return nil, new.Elements
	}
	if len(new.Elements) == 0 {
		return old.Elements, nil
	}
	oldByID := make(map[string]Element, len(old.Elements))
	for _, e := range old.Elements {
		oldByID[e.ID()] = e
	}
	for _, e := range new.Elements {
		id := e.ID()
		o, ok := oldByID[id]
		if ok {
			delete(oldByID, id)
			if o.SameValue(e) {
				continue
			}
			del = append(del, o)
		}
		add = append(add, e)
	}
	// Keep the order of old for what is left.
	for _, e := range old.Elements {
		if _, ok := oldByID[e.ID()]; ok {
			del = append(del, e)
		}
	}
	return del, add
}
