package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

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
	// chainRefs holds the chains the builder's elements lead to.
	chainRefs map[ChainSpec]chainRef
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

// chainElement adds an element that leads to the chain of s: a goto, or a
// jump to an endpoint's affinity chain (which returns when it does not
// remember the client).
func (b *builder) chainElement(set string, key []byte, s ChainSpec) {
	c := b.chain(s)
	b.add(Element{Set: set, Key: key, Verdict: c.verdict})
	b.useChain(c.name)
}

// chainRef is a chain's name and the verdict of the elements that lead to
// it.
type chainRef struct {
	name    string
	verdict *expr.Verdict
}

// chain returns the chain of s. The builder makes each name and verdict
// once: a view of 100,000 Services refers to a handful of chains.
func (b *builder) chain(s ChainSpec) chainRef {
	if c, ok := b.chainRefs[s]; ok {
		return c
	}
	if b.chainRefs == nil {
		b.chainRefs = make(map[ChainSpec]chainRef)
	}
	name := s.Name()
	kind := expr.VerdictGoto
	if s.Kind == KindAffinity {
		kind = expr.VerdictJump
	}
	c := chainRef{name: name, verdict: &expr.Verdict{Kind: kind, Chain: name}}
	b.chainRefs[s] = c
	return c
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
	clusterIPs, firewallIPs, firewallAllow, hairpinPairs string
	addrLen                                              int
	serviceGroup, nodePortGroup                          uint8
	// external is what the service addresses (ClusterIP, externalIPs,
	// LoadBalancer IPs) render to, nodePorts what the nodePorts do.
	external, nodePorts dispatchNames
}

// dispatchNames are the maps and chain kinds one kind of frontend renders
// to: service addresses or nodePorts.
type dispatchNames struct {
	dispatch, noEndpoints, endpoints, members string
	// Under externalTrafficPolicy Local: the dispatch element's verdict,
	// the maps it looks up, and the chain kinds.
	localVerdict                         *expr.Verdict
	localInternal, localExternal         string
	clusterKind, internalKind, localKind ChainKind
}

var (
	names4 = familyNames{
		clusterIPs: SetClusterIPs, firewallIPs: SetFirewallIPs, firewallAllow: SetFirewallAllow, hairpinPairs: SetHairpinPairs,
		addrLen: 4, serviceGroup: groupServiceIPs4, nodePortGroup: groupNodePorts4,
		external: dispatchNames{
			dispatch: MapServiceIPs, noEndpoints: MapNoEndpointServices, endpoints: MapServiceEndpoints, members: SetAffinityMembers,
			localVerdict: localIPsVerdict, localInternal: MapLocalInternalIPs, localExternal: MapLocalExternalIPs,
			clusterKind: KindExternal, internalKind: KindService, localKind: KindLocal,
		},
		nodePorts: dispatchNames{
			dispatch: MapServiceNodePorts, noEndpoints: MapNoEndpointNodePorts, endpoints: MapNodePortEndpoints, members: SetNodePortAffinityMembers,
			localVerdict: localNodePortsVerdict, localInternal: MapLocalInternalNodePorts, localExternal: MapLocalExternalNodePorts,
			clusterKind: KindNodePort, internalKind: KindNodePortInternal, localKind: KindNodePortLocal,
		},
	}
	names6 = familyNames{
		clusterIPs: SetClusterIPs6, firewallIPs: SetFirewallIPs6, firewallAllow: SetFirewallAllow6, hairpinPairs: SetHairpinPairs6,
		addrLen: 16, serviceGroup: groupServiceIPs6, nodePortGroup: groupNodePorts6,
		external: dispatchNames{
			dispatch: MapServiceIPs6, noEndpoints: MapNoEndpointServices6, endpoints: MapServiceEndpoints6, members: SetAffinityMembers6,
			localVerdict: localIPsVerdict, localInternal: MapLocalInternalIPs6, localExternal: MapLocalExternalIPs6,
			clusterKind: KindExternal, internalKind: KindService, localKind: KindLocal,
		},
		nodePorts: dispatchNames{
			dispatch: MapServiceNodePorts6, noEndpoints: MapNoEndpointNodePorts6, endpoints: MapNodePortEndpoints6, members: SetNodePortAffinityMembers6,
			localVerdict: localNodePortsVerdict, localInternal: MapLocalInternalNodePorts6, localExternal: MapLocalExternalNodePorts6,
			clusterKind: KindNodePort, internalKind: KindNodePortInternal, localKind: KindNodePortLocal,
		},
	}
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

// The verdicts of static chains, shared by every element that refers to
// them: never modify one.
var (
	dropVerdict           = &expr.Verdict{Kind: expr.VerdictDrop}
	rejectVerdict         = &expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainReject}
	localIPsVerdict       = &expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainLocalIPs}
	localNodePortsVerdict = &expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainLocalNodePorts}
)

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
		if port := ep.GetPort(); port < 1 || port > 65535 {
			// checkPort's error, its context built only when needed.
			return nil, fmt.Errorf("%s %q: %w", what, ep.GetIp(), checkPort(what+" port", port))
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

// parsedPort is a ServicePort entry checked and parsed.
type parsedPort struct {
	names    *familyNames
	v6       bool
	proto    byte
	port     uint32
	nodePort uint32
	affinity uint32
	// eps is what ClusterIP traffic reaches: with internalTrafficPolicy
	// Local, this node's endpoints only. clusterEps is the cluster-wide
	// set, for external traffic under Cluster policy and for traffic from
	// Pods and the node to external addresses. localEps is this node's
	// endpoints under externalTrafficPolicy Local (local).
	eps, clusterEps, localEps []endpoint
	internalLocal, local      bool
	clusterIP                 netip.Addr
	externals                 []externalFrontend
	// ranges are the loadBalancerSourceRanges, merged: one interval per
	// frontend for overlapping or touching ranges.
	ranges []addrRange
}

func (b *builder) servicePort(sp *doormanv1.ServicePort) error {
	var p parsedPort
	if err := p.parse(sp); err != nil {
		return err
	}
	b.clusterIPFrontend(&p)
	for _, x := range p.externals {
		b.externalFrontend(&p, x)
	}
	b.nodePortFrontend(&p)
	b.hairpinPairs(&p)
	return nil
}

func (p *parsedPort) parse(sp *doormanv1.ServicePort) error {
	*p = parsedPort{port: sp.GetPort(), nodePort: sp.GetNodePort(), affinity: sp.GetAffinityTimeoutSeconds(),
		internalLocal: sp.GetInternalPolicyLocal(), local: sp.GetExternalPolicyLocal()}
	switch sp.GetFamily() {
	case doormanv1.IPFamily_IP_FAMILY_IPV4:
		p.names = &names4
	case doormanv1.IPFamily_IP_FAMILY_IPV6:
		p.names, p.v6 = &names6, true
	default:
		return fmt.Errorf("IP family %v not supported", sp.GetFamily())
	}
	var err error
	if p.proto, err = protoNumber(sp.GetProtocol()); err != nil {
		return err
	}
	if err := checkPorts(sp); err != nil {
		return err
	}
	if err := p.parseEndpointSets(sp); err != nil {
		return err
	}
	if err := p.parseFrontends(sp); err != nil {
		return err
	}
	if p.ranges, err = parseSourceRanges(sp.GetLoadBalancerSourceRanges(), p.v6); err != nil {
		return err
	}
	return nil
}

// checkPorts checks the port, nodePort and healthCheckNodePort (0 for
// none) and the affinity timeout.
func checkPorts(sp *doormanv1.ServicePort) error {
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
	if aff := sp.GetAffinityTimeoutSeconds(); aff > AffinityTimeoutMax {
		return fmt.Errorf("affinity timeout %ds above %ds", aff, AffinityTimeoutMax)
	}
	return nil
}

func (p *parsedPort) parseEndpointSets(sp *doormanv1.ServicePort) error {
	var err error
	if p.eps, err = parseEndpoints(sp.GetEndpoints(), p.v6, "endpoint"); err != nil {
		return err
	}
	p.clusterEps = p.eps
	if p.internalLocal {
		if p.clusterEps, err = parseEndpoints(sp.GetClusterEndpoints(), p.v6, "cluster endpoint"); err != nil {
			return err
		}
	}
	if p.local {
		if p.localEps, err = parseEndpoints(sp.GetLocalEndpoints(), p.v6, "local endpoint"); err != nil {
			return err
		}
	}
	return nil
}

// parseFrontends reads the ClusterIP and the external addresses: each
// once, none equal to the ClusterIP, a LoadBalancer IP that is also an
// externalIP counted as a LoadBalancer IP.
func (p *parsedPort) parseFrontends(sp *doormanv1.ServicePort) error {
	if s := sp.GetClusterIp(); s != "" {
		var err error
		if p.clusterIP, err = parseAddr(s, p.v6); err != nil {
			return fmt.Errorf("clusterIP: %w", err)
		}
	}
	if err := p.addExternals("externalIP", sp.GetExternalIps(), false); err != nil {
		return err
	}
	return p.addExternals("load balancer IP", sp.GetLoadBalancerIps(), true)
}

func (p *parsedPort) addExternals(what string, list []string, lb bool) error {
	for _, s := range list {
		a, err := parseAddr(s, p.v6)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		dup := a == p.clusterIP
		for i := range p.externals {
			if p.externals[i].addr == a {
				p.externals[i].lb = p.externals[i].lb || lb
				dup = true
			}
		}
		if !dup {
			p.externals = append(p.externals, externalFrontend{a, lb})
		}
	}
	return nil
}

// parseSourceRanges reads loadBalancerSourceRanges of the entry's family,
// merged: one interval per frontend for overlapping or touching ranges.
func parseSourceRanges(list []string, v6 bool) ([]addrRange, error) {
	var ranges []addrRange
	for _, s := range list {
		p, err := doormanv1.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("load balancer source range: %w", err)
		}
		if p.Addr().Is6() != v6 {
			return nil, fmt.Errorf("load balancer source range %q is not of the entry's family", s)
		}
		p = p.Masked()
		ranges = append(ranges, addrRange{p.Addr(), lastAddr(p)})
	}
	return mergeRanges(ranges), nil
}

// clusterIPNoEndpoints is the ClusterIP's verdict when it has no endpoints:
// it refuses new connections. With internalTrafficPolicy Local it drops
// instead, as upstream, while the Service may have endpoints on other
// nodes: always, unless the cluster-wide set (sent when the Service has
// external addresses) shows it has none at all.
func (p *parsedPort) clusterIPNoEndpoints() *expr.Verdict {
	hasExternal := len(p.externals) > 0 || p.nodePort != 0
	if p.internalLocal && (!hasExternal || len(p.clusterEps) > 0) {
		return dropVerdict
	}
	return rejectVerdict
}

// frontendKey is "address . protocol . port".
func (b *builder) frontendKey(p *parsedPort, a netip.Addr) []byte {
	return putPort(putProto(putAddr(b.take(p.names.addrLen+8), a), p.proto), p.port)
}

func (b *builder) clusterIPFrontend(p *parsedPort) {
	if !p.clusterIP.IsValid() {
		return
	}
	n := p.names
	b.add(Element{Set: n.clusterIPs, Key: putAddr(b.take(n.addrLen), p.clusterIP), Shared: true})
	f := b.frontendKey(p, p.clusterIP)
	b.claim(n.serviceGroup, f, ClaimClusterIP)
	if len(p.eps) == 0 {
		b.add(Element{Set: n.external.noEndpoints, Key: f, Verdict: p.clusterIPNoEndpoints()})
		return
	}
	b.chainElement(n.external.dispatch, f, ChainSpec{Kind: KindService, K: len(p.eps), Affinity: p.affinity})
	b.endpoints(p, &n.external, f, p.eps, 0)
}

// externalFrontend renders an externalIP or LoadBalancer IP, with its
// firewall elements when it is a LoadBalancer IP with source ranges.
func (b *builder) externalFrontend(p *parsedPort, x externalFrontend) {
	n := p.names
	f := b.frontendKey(p, x.addr)
	kind := ClaimExternalIP
	if x.lb {
		kind = ClaimLoadBalancerIP
	}
	b.claim(n.serviceGroup, f, kind)
	if x.lb && len(p.ranges) > 0 {
		b.firewall(p, f)
	}
	b.externalDispatch(p, &n.external, f)
}

// firewall lets only the source ranges reach frontend f.
func (b *builder) firewall(p *parsedPort, f []byte) {
	n := p.names
	b.add(Element{Set: n.firewallIPs, Key: f})
	for _, r := range p.ranges {
		start := putAddr(append(b.take(len(f)+n.addrLen), f...), r.first)
		end := putAddr(append(b.take(len(f)+n.addrLen), f...), r.last)
		b.add(Element{Set: n.firewallAllow, Key: start, KeyEnd: end})
	}
}

func (b *builder) nodePortFrontend(p *parsedPort) {
	if p.nodePort == 0 {
		return
	}
	n := p.names
	f := putPort(putProto(b.take(8), p.proto), p.nodePort)
	b.claim(n.nodePortGroup, f, ClaimNodePort)
	b.externalDispatch(p, &n.nodePorts, f)
}

// externalDispatch renders the dispatch of an external frontend (an
// external address or a nodePort) under its external traffic policy: the
// cluster-wide endpoints at index 0 and, under policy Local, this node's
// endpoints from localOffset. Without any endpoint anywhere it refuses new
// connections.
func (b *builder) externalDispatch(p *parsedPort, d *dispatchNames, f []byte) {
	kcc, kl := len(p.clusterEps), len(p.localEps)
	switch {
	case kcc == 0:
		b.add(Element{Set: d.noEndpoints, Key: f, Verdict: rejectVerdict})
		return
	case !p.local:
		b.chainElement(d.dispatch, f, ChainSpec{Kind: d.clusterKind, K: kcc, Affinity: p.affinity})
	default:
		b.add(Element{Set: d.dispatch, Key: f, Verdict: d.localVerdict})
		b.chainElement(d.localInternal, f, ChainSpec{Kind: d.internalKind, K: kcc, Affinity: p.affinity})
		if kl == 0 {
			b.add(Element{Set: d.localExternal, Key: f, Verdict: dropVerdict})
		} else {
			b.chainElement(d.localExternal, f, ChainSpec{Kind: d.localKind, K: kl, Affinity: p.affinity})
			b.endpoints(p, d, f, p.localEps, localOffset)
		}
	}
	b.endpoints(p, d, f, p.clusterEps, 0)
}

// endpoints adds frontend f's endpoint elements from index offset and,
// with session affinity, its affinity members: for each endpoint at index
// i, i → jump to its affinity chain and affinityPickOffset + i → goto its
// pick chain.
func (b *builder) endpoints(p *parsedPort, d *dispatchNames, f []byte, list []endpoint, offset int) {
	addrLen := p.names.addrLen
	for i, ep := range list {
		key := putIndex(append(b.take(len(f)+4), f...), offset+i)
		value := putPort(putAddr(b.take(addrLen+4), ep.addr), ep.port)
		b.add(Element{Set: d.endpoints, Key: key, Value: value})
	}
	if p.affinity == 0 {
		return
	}
	for i, ep := range list {
		e := AffinityEndpoint{Proto: p.proto, Addr: ep.addr, Port: uint16(ep.port)}
		for _, kind := range []ChainKind{KindAffinity, KindAffinityPick} {
			idx := offset + i
			if kind == KindAffinityPick {
				idx += affinityPickOffset
			}
			key := putIndex(append(b.take(len(f)+4), f...), idx)
			b.chainElement(d.members, key, ChainSpec{Kind: kind, Affinity: p.affinity, Endpoint: e})
		}
	}
}

// hairpinPairs adds one "address . address" element per endpoint address
// the node may DNAT to.
func (b *builder) hairpinPairs(p *parsedPort) {
	if len(p.eps) == 0 && len(p.clusterEps) == 0 && len(p.localEps) == 0 {
		return
	}
	addrLen := p.names.addrLen
	for _, a := range distinctAddrs(p.eps, p.clusterEps, p.localEps) {
		b.add(Element{Set: p.names.hairpinPairs, Key: putAddr(putAddr(b.take(2*addrLen), a), a), Shared: true})
	}
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
