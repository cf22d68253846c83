package render

import (
	"github.com/google/nftables/expr"
)

// Localhost NodePorts (Options.LocalhostNodePorts), IPv4 only:
//
//	nat-output-localhost:  ip daddr 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
//	filter-input-localnet: ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state ! established,related ct status ! dnat drop
//
// The DNAT rule hooks nat output only: it sees packets the node itself
// sends, never packets from outside. It reuses the NodePort verdict map,
// so the NodePort chains pick the endpoint, and the node's own traffic is
// masqueraded there (nodeport-K marks it; local-nodeports marks sources
// of type local, which 127.0.0.1 is): a source of 127.0.0.1 cannot leave
// the node. The kernel reroutes such a packet only with
// net.ipv4.conf.all.route_localnet = 1, which the agent sets with the
// conntrack sysctls when the option is on. The chain exists without the
// option, empty.
//
// route_localnet also lets neighbours reach what listens on 127.0.0.1
// (CVE-2020-8558): filter-input-localnet drops what is addressed to
// 127.0.0.0/8 and did not come from the node's loopback, unless conntrack
// knows it (a reply, a related flow) or DNAT sent it there, as kube-proxy
// does. It is always there: route_localnet is one node-wide switch that
// outlives the option (an agent restarted without it, kube-proxy having
// set it before doorman replaced it), and without route_localnet the
// kernel drops those packets as martians before input anyway.
//
// IPv6 has no route_localnet: a packet from ::1 that DNAT sends off the
// node leaves masqueraded, but its reply, un-NATed back to ::1, arrives
// on a device other than lo and finds no route (Ip6InNoRoutes): the
// connection would hang. So there are no rules for [::1]; the kernel
// drops ::1 from outside by itself.

// Chain names.
const (
	ChainNATOutputLocalhost  = "nat-output-localhost"
	ChainFilterInputLocalnet = "filter-input-localnet"
)

// priorityFilter is nft's "filter" priority.
const priorityFilter = 0

// loopbackNet4 is 127.0.0.0/8: its network address and mask.
var loopbackNet4, loopbackMask4 = []byte{127, 0, 0, 0}, []byte{255, 0, 0, 0}

// inLoopback4: "ip daddr 127.0.0.0/8" or "ip saddr 127.0.0.0/8" (op
// CmpOpNeq: "!= 127.0.0.0/8"), in reg 1.
func inLoopback4(offset uint32, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: loopbackMask4, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: reg1, Data: loopbackNet4},
	}
}

// ctBitsClear: "ct <key> & <mask> == 0".
func ctBitsClear(key expr.CtKey, mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: reg1, Key: key},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(mask), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(0)},
	}
}

// localhostNodePortRules are nat-output-localhost's rules: none without
// the option.
func (o Options) localhostNodePortRules() []Rule {
	if !o.LocalhostNodePorts {
		return nil
	}
	exprs := append(fam4.nfprotoIs(), inLoopback4(fam4.daddrOff, expr.CmpOpEq)...)
	exprs = append(exprs, portVmap(MapServiceNodePorts)...)
	return []Rule{{Text: "ip daddr 127.0.0.0/8 meta l4proto . th dport vmap @" + MapServiceNodePorts, Exprs: exprs}}
}

// localnetDropRule is filter-input-localnet's rule (CVE-2020-8558).
func localnetDropRule() Rule {
	exprs := append(fam4.nfprotoIs(), inLoopback4(fam4.daddrOff, expr.CmpOpEq)...)
	exprs = append(exprs, inLoopback4(fam4.saddrOff, expr.CmpOpNeq)...)
	exprs = append(exprs, ctBitsClear(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)...)
	exprs = append(exprs, ctBitsClear(expr.CtKeySTATUS, ipsDstNAT)...)
	exprs = append(exprs, verdict(expr.VerdictDrop, ""))
	return Rule{
		Text:  "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state ! established,related ct status ! dnat drop",
		Exprs: exprs,
	}
}
