package render

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// The table doorman owns.
const (
	TableFamily = "inet"
	TableName   = "doorman"
)

// Set and map names.
const (
	SetClusterIPs           = "cluster-ips"
	SetClusterIPs6          = "cluster-ips6"
	SetNodePortIPs          = "nodeport-ips"
	SetNodePortIPs6         = "nodeport-ips6"
	MapServiceIPs           = "service-ips"
	MapServiceIPs6          = "service-ips6"
	MapServiceNodePorts     = "service-nodeports"
	MapServiceNodePorts6    = "service-nodeports6"
	MapServiceEndpoints     = "service-endpoints"
	MapServiceEndpoints6    = "service-endpoints6"
	MapNodePortEndpoints    = "nodeport-endpoints"
	MapNodePortEndpoints6   = "nodeport-endpoints6"
	MapNoEndpointServices   = "no-endpoint-services"
	MapNoEndpointServices6  = "no-endpoint-services6"
	MapNoEndpointNodePorts  = "no-endpoint-nodeports"
	MapNoEndpointNodePorts6 = "no-endpoint-nodeports6"

	// The node's Pod CIDRs (interval sets): sources counted as inside the
	// cluster by externalTrafficPolicy Local.
	SetPodCIDRs  = "pod-cidrs"
	SetPodCIDRs6 = "pod-cidrs6"
	// The cluster's Service CIDRs (interval sets, from ServiceCIDR
	// objects): what is still addressed to them after DNAT and is no
	// ClusterIP is dropped.
	SetServiceCIDRs  = "service-cidrs"
	SetServiceCIDRs6 = "service-cidrs6"
	// externalTrafficPolicy Local: a frontend's verdict for traffic from
	// inside the cluster (Pods, the node) and from outside.
	MapLocalInternalIPs        = "local-internal-ips"
	MapLocalInternalIPs6       = "local-internal-ips6"
	MapLocalExternalIPs        = "local-external-ips"
	MapLocalExternalIPs6       = "local-external-ips6"
	MapLocalInternalNodePorts  = "local-internal-nodeports"
	MapLocalInternalNodePorts6 = "local-internal-nodeports6"
	MapLocalExternalNodePorts  = "local-external-nodeports"
	MapLocalExternalNodePorts6 = "local-external-nodeports6"
	// loadBalancerSourceRanges: LoadBalancer frontends that have ranges,
	// and frontend . allowed source range (a concatenated interval set).
	SetFirewallIPs    = "firewall-ips"
	SetFirewallIPs6   = "firewall-ips6"
	SetFirewallAllow  = "firewall-allow"
	SetFirewallAllow6 = "firewall-allow6"
	// sessionAffinity ClientIP: the kernel's memory of which client went
	// to which endpoint of a frontend, "client . frontend address . port .
	// endpoint address . port", one set per protocol (dynamic, per-element
	// timeouts; never written by doorman); and the verdict maps that send a
	// frontend's packets to each endpoint's affinity chains: "frontend .
	// index" → jump affinity-<proto>-<endpoint>-<T> (index as in the
	// endpoint maps) or, from affinityPickOffset on, → goto
	// affinity-pick-<proto>-<endpoint>-<T>.
	SetAffinityTCP              = "affinity-tcp"
	SetAffinityUDP              = "affinity-udp"
	SetAffinitySCTP             = "affinity-sctp"
	SetAffinityTCP6             = "affinity6-tcp"
	SetAffinityUDP6             = "affinity6-udp"
	SetAffinitySCTP6            = "affinity6-sctp"
	SetAffinityMembers          = "affinity-members"
	SetAffinityMembers6         = "affinity-members6"
	SetNodePortAffinityMembers  = "nodeport-affinity-members"
	SetNodePortAffinityMembers6 = "nodeport-affinity-members6"
	// Hairpin: "endpoint . endpoint" for every endpoint address, so one
	// static rule masquerades a Pod that reached itself.
	SetHairpinPairs  = "hairpin-pairs"
	SetHairpinPairs6 = "hairpin-pairs6"
)

// Chain names.
const (
	ChainNATPrerouting        = "nat-prerouting"
	ChainNATOutput            = "nat-output"
	ChainNATPostrouting       = "nat-postrouting"
	ChainFilterPrerouting     = "filter-prerouting"
	ChainFilterInput          = "filter-input"
	ChainFilterForward        = "filter-forward"
	ChainFilterOutput         = "filter-output"
	ChainFilterOutputPostDNAT = "filter-output-post-dnat"
	ChainServices             = "services"
	ChainLocalIPs             = "local-ips"
	ChainLocalNodePorts       = "local-nodeports"
	ChainFirewallCheck        = "firewall-check"
	ChainEndpointsCheck       = "endpoints-check"
	ChainClusterIPsCheck      = "cluster-ips-check"
	ChainReject               = "reject-chain"
)

// localOffset is where a frontend's local endpoints start in the endpoint
// maps' index space (its cluster-wide endpoints start at 0), so one map
// serves both and numgen picks among the local ones with "offset".
const localOffset = 1 << 16

// affinityPickOffset is where the "pick" elements of the affinity member
// maps start: a frontend's endpoint at index i has its remembered-choice
// element at i and its fresh-choice element at affinityPickOffset + i.
const affinityPickOffset = 2 * localOffset

// Type is the type of one field of a set key or map value.
type Type int

const (
	TypeIPv4 Type = iota + 1
	TypeIPv6
	TypeProto
	TypePort
	TypeIndex
	TypeVerdict
)

// String is the type as nft spells it.
func (t Type) String() string {
	switch t {
	case TypeIPv4:
		return "ipv4_addr"
	case TypeIPv6:
		return "ipv6_addr"
	case TypeProto:
		return "inet_proto"
	case TypePort:
		return "inet_service"
	case TypeIndex:
		// A 32-bit integer in host byte order, as numgen writes it. nft's
		// "integer" has no length of its own: `nft list` cannot print a
		// concatenation holding one unless the set carries typeof data.
		return "mark"
	case TypeVerdict:
		return "verdict"
	}
	return "invalid"
}

// Len is the field's length in bytes, before padding.
func (t Type) Len() int {
	switch t {
	case TypeIPv4, TypeIndex:
		return 4
	case TypeIPv6:
		return 16
	case TypeProto:
		return 1
	case TypePort:
		return 2
	}
	return 0
}

// Set is an nftables set (Data empty), map (Data holds the value's fields)
// or verdict map (Data is [TypeVerdict]).
type Set struct {
	Name string
	Key  []Type
	Data []Type
	// Interval: elements are ranges (flags interval). A single-field
	// interval set holds start and end elements; a concatenated one holds
	// elements with KeyEnd.
	Interval bool
	// Dynamic: filled by the packet path ("update @set"), with per-element
	// timeouts (flags dynamic,timeout). Doorman never reads or writes its
	// elements; Sync leaves them alone.
	Dynamic bool
}

// IsMap reports whether the set maps keys to values.
func (s Set) IsMap() bool { return len(s.Data) > 0 }

// IsVerdictMap reports whether the values are verdicts.
func (s Set) IsVerdictMap() bool { return len(s.Data) == 1 && s.Data[0] == TypeVerdict }

// TypeText is the set's type as nft prints it: "ipv4_addr . inet_proto :
// verdict".
func (s Set) TypeText() string {
	var b strings.Builder
	writeTypes(&b, s.Key)
	if s.IsMap() {
		b.WriteString(" : ")
		writeTypes(&b, s.Data)
	}
	return b.String()
}

// DeclText declares the set's type in nft syntax: "type <TypeText>",
// or, for a set holding an endpoint index, "typeof" with the expressions
// that fill it ("typeof ip daddr . meta l4proto . th dport . numgen random
// mod 1 : ip daddr . th dport"). nft lists such a set's index as "mark",
// but reads numgen's value as an integer, which it accepts only in a set
// declared by typeof.
func (s Set) DeclText() string {
	if !slices.Contains(s.Key, TypeIndex) {
		return "type " + s.TypeText()
	}
	var b strings.Builder
	b.WriteString("typeof ")
	writeTypeofs(&b, s.Key)
	if s.IsMap() {
		b.WriteString(" : ")
		writeTypeofs(&b, s.Data)
	}
	return b.String()
}

func writeTypeofs(b *strings.Builder, ts []Type) {
	for i, t := range ts {
		if i > 0 {
			b.WriteString(" . ")
		}
		b.WriteString(t.typeof())
	}
}

// typeof is an expression of the field's type, for a typeof declaration.
func (t Type) typeof() string {
	switch t {
	case TypeIPv4:
		return "ip daddr"
	case TypeIPv6:
		return "ip6 daddr"
	case TypeProto:
		return "meta l4proto"
	case TypePort:
		return "th dport"
	case TypeIndex:
		return "numgen random mod 1"
	}
	return t.String()
}

// FlagsText is the set's flags as nft prints them, "" when none.
func (s Set) FlagsText() string {
	switch {
	case s.Interval:
		return "interval"
	case s.Dynamic:
		return "dynamic,timeout"
	}
	return ""
}

func writeTypes(b *strings.Builder, ts []Type) {
	for i, t := range ts {
		if i > 0 {
			b.WriteString(" . ")
		}
		b.WriteString(t.String())
	}
}

var (
	addrProtoPort4     = []Type{TypeIPv4, TypeProto, TypePort}
	addrProtoPort6     = []Type{TypeIPv6, TypeProto, TypePort}
	protoPort          = []Type{TypeProto, TypePort}
	verdictData        = []Type{TypeVerdict}
	endpointValue4     = []Type{TypeIPv4, TypePort}
	endpointValue6     = []Type{TypeIPv6, TypePort}
	addrProtoPortI4    = []Type{TypeIPv4, TypeProto, TypePort, TypeIndex}
	addrProtoPortI6    = []Type{TypeIPv6, TypeProto, TypePort, TypeIndex}
	protoPortIndex     = []Type{TypeProto, TypePort, TypeIndex}
	addrProtoPortAddr4 = []Type{TypeIPv4, TypeProto, TypePort, TypeIPv4}
	addrProtoPortAddr6 = []Type{TypeIPv6, TypeProto, TypePort, TypeIPv6}
	clientEndpoint4    = []Type{TypeIPv4, TypeIPv4, TypePort, TypeIPv4, TypePort}
	clientEndpoint6    = []Type{TypeIPv6, TypeIPv6, TypePort, TypeIPv6, TypePort}
	addrPair4          = []Type{TypeIPv4, TypeIPv4}
	addrPair6          = []Type{TypeIPv6, TypeIPv6}
)

var allSets = []Set{
	{Name: SetClusterIPs, Key: []Type{TypeIPv4}},
	{Name: SetClusterIPs6, Key: []Type{TypeIPv6}},
	{Name: SetNodePortIPs, Key: []Type{TypeIPv4}},
	{Name: SetNodePortIPs6, Key: []Type{TypeIPv6}},
	{Name: SetPodCIDRs, Key: []Type{TypeIPv4}, Interval: true},
	{Name: SetPodCIDRs6, Key: []Type{TypeIPv6}, Interval: true},
	{Name: SetServiceCIDRs, Key: []Type{TypeIPv4}, Interval: true},
	{Name: SetServiceCIDRs6, Key: []Type{TypeIPv6}, Interval: true},
	{Name: MapServiceIPs, Key: addrProtoPort4, Data: verdictData},
	{Name: MapServiceIPs6, Key: addrProtoPort6, Data: verdictData},
	{Name: MapServiceNodePorts, Key: protoPort, Data: verdictData},
	{Name: MapServiceNodePorts6, Key: protoPort, Data: verdictData},
	{Name: MapServiceEndpoints, Key: addrProtoPortI4, Data: endpointValue4},
	{Name: MapServiceEndpoints6, Key: addrProtoPortI6, Data: endpointValue6},
	{Name: MapNodePortEndpoints, Key: protoPortIndex, Data: endpointValue4},
	{Name: MapNodePortEndpoints6, Key: protoPortIndex, Data: endpointValue6},
	{Name: MapLocalInternalIPs, Key: addrProtoPort4, Data: verdictData},
	{Name: MapLocalInternalIPs6, Key: addrProtoPort6, Data: verdictData},
	{Name: MapLocalExternalIPs, Key: addrProtoPort4, Data: verdictData},
	{Name: MapLocalExternalIPs6, Key: addrProtoPort6, Data: verdictData},
	{Name: MapLocalInternalNodePorts, Key: protoPort, Data: verdictData},
	{Name: MapLocalInternalNodePorts6, Key: protoPort, Data: verdictData},
	{Name: MapLocalExternalNodePorts, Key: protoPort, Data: verdictData},
	{Name: MapLocalExternalNodePorts6, Key: protoPort, Data: verdictData},
	{Name: MapNoEndpointServices, Key: addrProtoPort4, Data: verdictData},
	{Name: MapNoEndpointServices6, Key: addrProtoPort6, Data: verdictData},
	{Name: MapNoEndpointNodePorts, Key: protoPort, Data: verdictData},
	{Name: MapNoEndpointNodePorts6, Key: protoPort, Data: verdictData},
	{Name: SetFirewallIPs, Key: addrProtoPort4},
	{Name: SetFirewallIPs6, Key: addrProtoPort6},
	{Name: SetFirewallAllow, Key: addrProtoPortAddr4, Interval: true},
	{Name: SetFirewallAllow6, Key: addrProtoPortAddr6, Interval: true},
	{Name: SetAffinityTCP, Key: clientEndpoint4, Dynamic: true},
	{Name: SetAffinityUDP, Key: clientEndpoint4, Dynamic: true},
	{Name: SetAffinitySCTP, Key: clientEndpoint4, Dynamic: true},
	{Name: SetAffinityTCP6, Key: clientEndpoint6, Dynamic: true},
	{Name: SetAffinityUDP6, Key: clientEndpoint6, Dynamic: true},
	{Name: SetAffinitySCTP6, Key: clientEndpoint6, Dynamic: true},
	{Name: SetAffinityMembers, Key: addrProtoPortI4, Data: verdictData},
	{Name: SetAffinityMembers6, Key: addrProtoPortI6, Data: verdictData},
	{Name: SetNodePortAffinityMembers, Key: protoPortIndex, Data: verdictData},
	{Name: SetNodePortAffinityMembers6, Key: protoPortIndex, Data: verdictData},
	{Name: SetHairpinPairs, Key: addrPair4},
	{Name: SetHairpinPairs6, Key: addrPair6},
}

// Sets returns every set and map of the table, in a fixed order.
func Sets() []Set { return append([]Set(nil), allSets...) }

// setIndex numbers the sets in Sets order; element identities use it.
var setIndex = func() map[string]int {
	m := make(map[string]int, len(allSets))
	for i, s := range allSets {
		m[s.Name] = i
	}
	return m
}()

// SetByName returns the set of that name.
func SetByName(name string) (Set, bool) {
	i, ok := setIndex[name]
	if !ok {
		return Set{}, false
	}
	return allSets[i], true
}

// AffinityTimeoutMax bounds sessionAffinity timeouts (Kubernetes allows at
// most a day): the shared validator's bound.
const AffinityTimeoutMax = doormanv1.AffinityTimeoutMax

// Hook attaches a base chain to a netfilter hook.
type Hook struct {
	Type     string // "nat" or "filter"
	Hook     string // "prerouting", "input", "forward", "output", "postrouting"
	Priority int
}

// Chain is a chain with its rules; Hook is nil for a regular chain.
type Chain struct {
	Name  string
	Hook  *Hook
	Rules []Rule
}

// Priorities, as in nft: dstnat = -100, srcnat = 100. The filter chains
// run just before DNAT (to reject Services without endpoints while the
// destination is still the Service address, and to apply source ranges)
// and just after it (to reject what DNAT left addressed to a ClusterIP:
// ports the Service lacks; and to drop what it left addressed to the
// Service CIDRs: addresses no Service holds).
const (
	priorityDstNAT       = -100
	prioritySrcNAT       = 100
	priorityBeforeDstNAT = -110
	priorityAfterDstNAT  = -90
)

// StaticChains returns the chains every table has, in a fixed order, with
// the default Options.
func StaticChains() []Chain { return Options{}.StaticChains() }

// StaticChains returns the chains every table has, in a fixed order.
func (o Options) StaticChains() []Chain {
	return []Chain{
		{Name: ChainNATPrerouting, Hook: &Hook{"nat", "prerouting", priorityDstNAT}, Rules: []Rule{jumpRule(ChainServices)}},
		{Name: ChainNATOutput, Hook: &Hook{"nat", "output", priorityDstNAT}, Rules: []Rule{jumpRule(ChainServices)}},
		{Name: ChainNATPostrouting, Hook: &Hook{"nat", "postrouting", prioritySrcNAT}, Rules: []Rule{
			hairpinRule(fam4, SetHairpinPairs),
			hairpinRule(fam6, SetHairpinPairs6),
			returnUnlessMarkedRule(),
			clearMasqMarkRule(),
			masqueradeRule(),
		}},
		{Name: ChainFilterPrerouting, Hook: &Hook{"filter", "prerouting", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainFirewallCheck),
		}},
		{Name: ChainFilterInput, Hook: &Hook{"filter", "input", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainEndpointsCheck),
		}},
		{Name: ChainFilterForward, Hook: &Hook{"filter", "forward", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainEndpointsCheck),
			ctNewJumpRule(ChainClusterIPsCheck),
		}},
		{Name: ChainFilterOutput, Hook: &Hook{"filter", "output", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainFirewallCheck),
			ctNewJumpRule(ChainEndpointsCheck),
		}},
		{Name: ChainFilterOutputPostDNAT, Hook: &Hook{"filter", "output", priorityAfterDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainClusterIPsCheck),
		}},
		{Name: ChainServices, Rules: append(o.clusterIPMasqRules(),
			addrPortVmapRule(fam4, MapServiceIPs),
			addrPortVmapRule(fam6, MapServiceIPs6),
			nodePortVmapRule(fam4, SetNodePortIPs, MapServiceNodePorts),
			nodePortVmapRule(fam6, SetNodePortIPs6, MapServiceNodePorts6),
		)},
		{Name: ChainLocalIPs, Rules: append(o.fromPodsRules(false, MapLocalInternalIPs, MapLocalInternalIPs6),
			fromNodeMarkRule(),
			fromNodeAddrPortVmapRule(fam4, MapLocalInternalIPs),
			fromNodeAddrPortVmapRule(fam6, MapLocalInternalIPs6),
			addrPortVmapRule(fam4, MapLocalExternalIPs),
			addrPortVmapRule(fam6, MapLocalExternalIPs6),
		)},
		{Name: ChainLocalNodePorts, Rules: append(o.fromPodsRules(true, MapLocalInternalNodePorts, MapLocalInternalNodePorts6),
			fromNodeMarkRule(),
			fromNodePortVmapRule(fam4, MapLocalInternalNodePorts),
			fromNodePortVmapRule(fam6, MapLocalInternalNodePorts6),
			portVmapRule(fam4, MapLocalExternalNodePorts),
			portVmapRule(fam6, MapLocalExternalNodePorts6),
		)},
		{Name: ChainFirewallCheck, Rules: []Rule{
			firewallRule(fam4, SetFirewallIPs, SetFirewallAllow),
			firewallRule(fam6, SetFirewallIPs6, SetFirewallAllow6),
		}},
		{Name: ChainEndpointsCheck, Rules: []Rule{
			addrPortVmapRule(fam4, MapNoEndpointServices),
			addrPortVmapRule(fam6, MapNoEndpointServices6),
			nodePortVmapRule(fam4, SetNodePortIPs, MapNoEndpointNodePorts),
			nodePortVmapRule(fam6, SetNodePortIPs6, MapNoEndpointNodePorts6),
		}},
		{Name: ChainClusterIPsCheck, Rules: []Rule{
			addrInSetGotoRule(fam4, SetClusterIPs, ChainReject),
			addrInSetGotoRule(fam6, SetClusterIPs6, ChainReject),
			addrInSetDropRule(fam4, SetServiceCIDRs),
			addrInSetDropRule(fam6, SetServiceCIDRs6),
		}},
		{Name: ChainReject, Rules: []Rule{rejectTCPRule(), rejectRule()}},
		{Name: ChainNATOutputLocalhost, Hook: &Hook{"nat", "output", priorityDstNAT}, Rules: o.localhostNodePortRules()},
		{Name: ChainFilterInputLocalnet, Hook: &Hook{"filter", "input", priorityFilter}, Rules: []Rule{localnetDropRule()}},
	}
}

// ChainKind is a kind of chain built from its name alone. The
// per-endpoint-count kinds say how the chain finds the frontend's
// endpoints, whether it asks for masquerade, and which part of the index
// space (cluster-wide or local endpoints) it picks from; the affinity kinds
// are per endpoint and sessionAffinity timeout.
type ChainKind int

const (
	// KindService: ClusterIP traffic, and traffic from inside the cluster
	// to an externalTrafficPolicy Local address. "service-K".
	KindService ChainKind = iota
	// KindExternal: externalIPs and LoadBalancer IPs, Cluster policy;
	// masqueraded. "external-K".
	KindExternal
	// KindLocal: externalIPs and LoadBalancer IPs, Local policy, from
	// outside: local endpoints, source kept. "local-K".
	KindLocal
	// KindNodePort: NodePorts, Cluster policy; masqueraded. "nodeport-K".
	KindNodePort
	// KindNodePortLocal: NodePorts, Local policy, from outside: local
	// endpoints, source kept. "nodeport-local-K".
	KindNodePortLocal
	// KindNodePortInternal: NodePorts, Local policy, from inside the
	// cluster: every endpoint, not masqueraded (node-sourced traffic was
	// marked by local-nodeports). "nodeport-internal-K".
	KindNodePortInternal
	// KindAffinity: DNAT to one endpoint when the kernel remembers that
	// the client went there through this frontend (refreshing the memory),
	// else return. "affinity-tcp-10.244.1.10-80-10800".
	KindAffinity
	// KindAffinityPick: remember the client and DNAT to one endpoint, a
	// fresh random choice. "affinity-pick-tcp-10.244.1.10-80-10800".
	KindAffinityPick
	numKinds
)

var kindPrefix = [numKinds]string{"service-", "external-", "local-", "nodeport-", "nodeport-local-", "nodeport-internal-",
	"affinity-", "affinity-pick-"}

// byFrontendAddr: the kind's endpoints are keyed by destination address .
// protocol . port (else by protocol . port, for NodePorts).
func (k ChainKind) byFrontendAddr() bool { return k <= KindLocal }
func (k ChainKind) masquerade() bool     { return k == KindExternal || k == KindNodePort }
func (k ChainKind) perEndpoint() bool    { return k == KindAffinity || k == KindAffinityPick }
func (k ChainKind) offset() int {
	if k == KindLocal || k == KindNodePortLocal {
		return localOffset
	}
	return 0
}

// ChainSpec identifies a chain built from its name: kind, endpoint count K
// (≥ 1, per-endpoint-count kinds), sessionAffinity timeout in seconds (0 =
// none) and, for the affinity kinds, the endpoint.
type ChainSpec struct {
	Kind     ChainKind
	K        int
	Affinity uint32
	Endpoint AffinityEndpoint
}

// AffinityEndpoint is the endpoint of an affinity chain: protocol number,
// address and port.
type AffinityEndpoint struct {
	Proto byte
	Addr  netip.Addr
	Port  uint16
}

var protoNames = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_SCTP: "sctp"}

// Name is the chain's name: "service-2", "nodeport-local-1",
// "service-3-affinity-10800", "affinity-tcp-10.244.1.10-80-10800".
func (s ChainSpec) Name() string {
	if s.Kind.perEndpoint() {
		e := s.Endpoint
		return kindPrefix[s.Kind] + protoNames[e.Proto] + "-" + addrNameText(e.Addr) + "-" +
			strconv.Itoa(int(e.Port)) + "-" + strconv.FormatUint(uint64(s.Affinity), 10)
	}
	n := kindPrefix[s.Kind] + strconv.Itoa(s.K)
	if s.Affinity > 0 {
		n += "-affinity-" + strconv.FormatUint(uint64(s.Affinity), 10)
	}
	return n
}

// ParseChainName reads the name of a chain built from its name back.
func ParseChainName(name string) (ChainSpec, bool) {
	// Longest prefixes first: "affinity-pick-" before "affinity-",
	// "nodeport-local-" before "nodeport-".
	for _, kind := range []ChainKind{KindAffinityPick, KindAffinity} {
		if rest, ok := strings.CutPrefix(name, kindPrefix[kind]); ok {
			return parseAffinityChainName(kind, rest)
		}
	}
	for _, kind := range []ChainKind{KindNodePortInternal, KindNodePortLocal, KindNodePort, KindService, KindExternal, KindLocal} {
		rest, ok := strings.CutPrefix(name, kindPrefix[kind])
		if !ok {
			continue
		}
		kText, affText, hasAff := strings.Cut(rest, "-affinity-")
		k, ok := positive(kText)
		if !ok {
			return ChainSpec{}, false
		}
		spec := ChainSpec{Kind: kind, K: k}
		if hasAff {
			t, ok := affinityTimeout(affText)
			if !ok {
				return ChainSpec{}, false
			}
			spec.Affinity = t
		}
		return spec, true
	}
	return ChainSpec{}, false
}

// parseAffinityChainName reads "<proto>-<address>-<port>-<timeout>" (an
// address has no "-").
func parseAffinityChainName(kind ChainKind, rest string) (ChainSpec, bool) {
	parts := strings.Split(rest, "-")
	if len(parts) != 4 {
		return ChainSpec{}, false
	}
	spec := ChainSpec{Kind: kind}
	for p, n := range protoNames {
		if n == parts[0] {
			spec.Endpoint.Proto = p
		}
	}
	addr, err := parseAddrNameText(parts[1])
	port, portOK := positive(parts[2])
	t, tOK := affinityTimeout(parts[3])
	if spec.Endpoint.Proto == 0 || err != nil || addr.Zone() != "" || addr.Is4In6() || !portOK || port > 65535 || !tOK {
		return ChainSpec{}, false
	}
	spec.Endpoint.Addr, spec.Endpoint.Port, spec.Affinity = addr, uint16(port), t
	if spec.Name() != kindPrefix[kind]+rest {
		return ChainSpec{}, false // not the canonical spelling
	}
	return spec, true
}

// addrNameText spells an address for a chain name: an IPv6 address with
// "." for ":" ("fd00.244.1..6"), as nft reads no ":" in a chain name.
func addrNameText(a netip.Addr) string {
	if a.Is6() {
		return strings.ReplaceAll(a.String(), ":", ".")
	}
	return a.String()
}

// parseAddrNameText reads addrNameText's spelling.
func parseAddrNameText(s string) (netip.Addr, error) {
	if strings.Contains(s, ":") {
		return netip.Addr{}, fmt.Errorf("address %q in a chain name has a colon", s)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(s, ".", ":"))
	if err != nil || !a.Is6() {
		return netip.Addr{}, fmt.Errorf("address %q in a chain name: not an address", s)
	}
	return a, nil
}

func affinityTimeout(s string) (uint32, bool) {
	t, ok := positive(s)
	if !ok || t > AffinityTimeoutMax {
		return 0, false
	}
	return uint32(t), true
}

func positive(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

// EndpointChain returns the chain of that name when it is one of the
// chains built from their names (per endpoint count, per affinity
// endpoint).
func EndpointChain(name string) (Chain, bool) {
	spec, ok := ParseChainName(name)
	if !ok {
		return Chain{}, false
	}
	return spec.Chain(), true
}

// Chain builds the chain. A per-endpoint-count chain has one DNAT rule per
// family after a masquerade mark when the kind asks for it; with affinity,
// one rule per endpoint and family that looks for the client's remembered
// endpoint, then one that picks afresh (see affinityMemberRule). An
// affinity chain has one rule (see affinityRule).
func (s ChainSpec) Chain() Chain {
	c := Chain{Name: s.Name()}
	if s.Kind.perEndpoint() {
		c.Rules = []Rule{affinityRule(s)}
		return c
	}
	if s.Kind.masquerade() {
		c.Rules = append(c.Rules, setMasqMarkRule())
	}
	for _, f := range []fam{fam4, fam6} {
		if s.Affinity == 0 {
			c.Rules = append(c.Rules, pickDNATRule(f, s))
			continue
		}
		for i := range s.K {
			c.Rules = append(c.Rules, affinityMemberRule(f, s, i))
		}
		c.Rules = append(c.Rules, affinityMemberPickRule(f, s))
	}
	return c
}

// sortChainNames orders chain names by kind, then K, then affinity, then
// endpoint.
func sortChainNames(names []string) {
	sort.Slice(names, func(i, j int) bool {
		a, _ := ParseChainName(names[i])
		b, _ := ParseChainName(names[j])
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.K != b.K {
			return a.K < b.K
		}
		if a.Affinity != b.Affinity {
			return a.Affinity < b.Affinity
		}
		ea, eb := a.Endpoint, b.Endpoint
		if ea.Proto != eb.Proto {
			return ea.Proto < eb.Proto
		}
		if c := ea.Addr.Compare(eb.Addr); c != 0 {
			return c < 0
		}
		return ea.Port < eb.Port
	})
}
