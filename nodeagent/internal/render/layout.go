package render

import (
	"sort"
	"strconv"
	"strings"
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
)

// Chain names.
const (
	ChainNATPrerouting        = "nat-prerouting"
	ChainNATOutput            = "nat-output"
	ChainNATPostrouting       = "nat-postrouting"
	ChainFilterInput          = "filter-input"
	ChainFilterForward        = "filter-forward"
	ChainFilterOutput         = "filter-output"
	ChainFilterOutputPostDNAT = "filter-output-post-dnat"
	ChainServices             = "services"
	ChainEndpointsCheck       = "endpoints-check"
	ChainClusterIPsCheck      = "cluster-ips-check"
	ChainReject               = "reject-chain"

	// Prefixes of the chains made per endpoint count K: "service-2".
	serviceChainPrefix  = "service-"
	nodePortChainPrefix = "nodeport-"
)

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

func writeTypes(b *strings.Builder, ts []Type) {
	for i, t := range ts {
		if i > 0 {
			b.WriteString(" . ")
		}
		b.WriteString(t.String())
	}
}

var (
	addrProtoPort4  = []Type{TypeIPv4, TypeProto, TypePort}
	addrProtoPort6  = []Type{TypeIPv6, TypeProto, TypePort}
	protoPort       = []Type{TypeProto, TypePort}
	verdictData     = []Type{TypeVerdict}
	endpointValue4  = []Type{TypeIPv4, TypePort}
	endpointValue6  = []Type{TypeIPv6, TypePort}
	addrProtoPortI4 = []Type{TypeIPv4, TypeProto, TypePort, TypeIndex}
	addrProtoPortI6 = []Type{TypeIPv6, TypeProto, TypePort, TypeIndex}
	protoPortIndex  = []Type{TypeProto, TypePort, TypeIndex}
)

// Sets returns every set and map of the table, in a fixed order.
func Sets() []Set {
	return []Set{
		{Name: SetClusterIPs, Key: []Type{TypeIPv4}},
		{Name: SetClusterIPs6, Key: []Type{TypeIPv6}},
		{Name: SetNodePortIPs, Key: []Type{TypeIPv4}},
		{Name: SetNodePortIPs6, Key: []Type{TypeIPv6}},
		{Name: MapServiceIPs, Key: addrProtoPort4, Data: verdictData},
		{Name: MapServiceIPs6, Key: addrProtoPort6, Data: verdictData},
		{Name: MapServiceNodePorts, Key: protoPort, Data: verdictData},
		{Name: MapServiceNodePorts6, Key: protoPort, Data: verdictData},
		{Name: MapServiceEndpoints, Key: addrProtoPortI4, Data: endpointValue4},
		{Name: MapServiceEndpoints6, Key: addrProtoPortI6, Data: endpointValue6},
		{Name: MapNodePortEndpoints, Key: protoPortIndex, Data: endpointValue4},
		{Name: MapNodePortEndpoints6, Key: protoPortIndex, Data: endpointValue6},
		{Name: MapNoEndpointServices, Key: addrProtoPort4, Data: verdictData},
		{Name: MapNoEndpointServices6, Key: addrProtoPort6, Data: verdictData},
		{Name: MapNoEndpointNodePorts, Key: protoPort, Data: verdictData},
		{Name: MapNoEndpointNodePorts6, Key: protoPort, Data: verdictData},
	}
}

var setsByName = func() map[string]Set {
	m := make(map[string]Set)
	for _, s := range Sets() {
		m[s.Name] = s
	}
	return m
}()

// SetByName returns the set of that name.
func SetByName(name string) (Set, bool) {
	s, ok := setsByName[name]
	return s, ok
}

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
// destination is still the Service address) and just after it (to reject
// what DNAT left addressed to a ClusterIP: ports the Service lacks).
const (
	priorityDstNAT       = -100
	prioritySrcNAT       = 100
	priorityBeforeDstNAT = -110
	priorityAfterDstNAT  = -90
)

// StaticChains returns the chains every table has, in a fixed order.
func StaticChains() []Chain {
	return []Chain{
		{Name: ChainNATPrerouting, Hook: &Hook{"nat", "prerouting", priorityDstNAT}, Rules: []Rule{jumpRule(ChainServices)}},
		{Name: ChainNATOutput, Hook: &Hook{"nat", "output", priorityDstNAT}, Rules: []Rule{jumpRule(ChainServices)}},
		{Name: ChainNATPostrouting, Hook: &Hook{"nat", "postrouting", prioritySrcNAT}, Rules: []Rule{
			returnUnlessMarkedRule(),
			clearMasqMarkRule(),
			masqueradeRule(),
		}},
		{Name: ChainFilterInput, Hook: &Hook{"filter", "input", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainEndpointsCheck),
		}},
		{Name: ChainFilterForward, Hook: &Hook{"filter", "forward", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainEndpointsCheck),
			ctNewJumpRule(ChainClusterIPsCheck),
		}},
		{Name: ChainFilterOutput, Hook: &Hook{"filter", "output", priorityBeforeDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainEndpointsCheck),
		}},
		{Name: ChainFilterOutputPostDNAT, Hook: &Hook{"filter", "output", priorityAfterDstNAT}, Rules: []Rule{
			ctNewJumpRule(ChainClusterIPsCheck),
		}},
		{Name: ChainServices, Rules: []Rule{
			addrPortVmapRule(fam4, MapServiceIPs),
			addrPortVmapRule(fam6, MapServiceIPs6),
			nodePortVmapRule(fam4, SetNodePortIPs, MapServiceNodePorts),
			nodePortVmapRule(fam6, SetNodePortIPs6, MapServiceNodePorts6),
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
		}},
		{Name: ChainReject, Rules: []Rule{rejectTCPRule(), rejectRule()}},
	}
}

// ServiceChainName is the chain that DNATs ClusterIP traffic of Services
// with k endpoints: "service-<k>".
func ServiceChainName(k int) string { return serviceChainPrefix + strconv.Itoa(k) }

// NodePortChainName is the chain that marks for masquerade and DNATs
// NodePort traffic of Services with k endpoints: "nodeport-<k>".
func NodePortChainName(k int) string { return nodePortChainPrefix + strconv.Itoa(k) }

// EndpointChain returns the chain of that name when it is one of the
// per-endpoint-count chains ("service-K", "nodeport-K", K ≥ 1).
func EndpointChain(name string) (Chain, bool) {
	if k, ok := chainK(name, serviceChainPrefix); ok {
		return Chain{Name: name, Rules: []Rule{
			serviceDNATRule(fam4, k, MapServiceEndpoints),
			serviceDNATRule(fam6, k, MapServiceEndpoints6),
		}}, true
	}
	if k, ok := chainK(name, nodePortChainPrefix); ok {
		return Chain{Name: name, Rules: []Rule{
			setMasqMarkRule(),
			nodePortDNATRule(fam4, k, MapNodePortEndpoints),
			nodePortDNATRule(fam6, k, MapNodePortEndpoints6),
		}}, true
	}
	return Chain{}, false
}

func chainK(name, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return 0, false
	}
	k, err := strconv.Atoi(rest)
	if err != nil || k < 1 || strconv.Itoa(k) != rest {
		return 0, false
	}
	return k, true
}

// sortChainNames orders per-K chain names by kind, then by K.
func sortChainNames(names []string) {
	sort.Slice(names, func(i, j int) bool {
		pi, ki := splitK(names[i])
		pj, kj := splitK(names[j])
		if pi != pj {
			return pi > pj // "service-" before "nodeport-"
		}
		return ki < kj
	})
}

func splitK(name string) (string, int) {
	if k, ok := chainK(name, serviceChainPrefix); ok {
		return serviceChainPrefix, k
	}
	k, _ := chainK(name, nodePortChainPrefix)
	return nodePortChainPrefix, k
}
