package doormanv1

import (
	"strconv"
	"strings"
)

// ServicePortKey is the key a ServicePort is stored under in a view:
// "<namespace>/<name>:<port>/<protocol>/<family>", where <port> is the
// port's name, or its number when the port is unnamed; a shard's is that
// followed by "@<shard node>" (see ShardKey).
func ServicePortKey(sp *ServicePort) string {
	if sp.GetShard() {
		return ShardKey(portKey(sp), sp.GetShardNode())
	}
	return portKey(sp)
}

func portKey(sp *ServicePort) string {
	port := sp.GetPortName()
	if port == "" {
		port = strconv.FormatUint(uint64(sp.GetPort()), 10)
	}
	var b strings.Builder
	b.Grow(len(sp.GetNamespace()) + len(sp.GetName()) + len(port) + 16)
	b.WriteString(sp.GetNamespace())
	b.WriteByte('/')
	b.WriteString(sp.GetName())
	b.WriteByte(':')
	b.WriteString(port)
	b.WriteByte('/')
	b.WriteString(ProtocolName(sp.GetProtocol()))
	b.WriteByte('/')
	b.WriteString(FamilyName(sp.GetFamily()))
	return b.String()
}

// ProtocolName is the protocol as nft and keys spell it: tcp, udp, sctp.
func ProtocolName(p Protocol) string {
	switch p {
	case Protocol_PROTOCOL_TCP:
		return "tcp"
	case Protocol_PROTOCOL_UDP:
		return "udp"
	case Protocol_PROTOCOL_SCTP:
		return "sctp"
	}
	return "unspecified"
}

// FamilyName is the IP family as keys spell it: ipv4, ipv6.
func FamilyName(f IPFamily) string {
	switch f {
	case IPFamily_IP_FAMILY_IPV4:
		return "ipv4"
	case IPFamily_IP_FAMILY_IPV6:
		return "ipv6"
	}
	return "unspecified"
}
