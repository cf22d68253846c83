package render

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rule is one nftables rule: the expressions the kernel runs and the nft
// text they stand for. Text is also stored in the kernel as the rule's
// comment, which is how the dataplane recognises its own rules.
type Rule struct {
	Text  string
	Exprs []expr.Any
}

// Registers. nft concatenations load each field into consecutive 32-bit
// registers starting at reg 1 (= NFT_REG32_00): an IPv4 address takes one,
// an IPv6 address four, a protocol, a port or a numgen index one each.
const (
	regVerdict = unix.NFT_REG_VERDICT
	reg1       = unix.NFT_REG_1
	reg32_01   = unix.NFT_REG32_01
	reg32_02   = unix.NFT_REG32_02
	reg32_03   = unix.NFT_REG32_03
	reg32_04   = unix.NFT_REG32_04
	reg32_05   = unix.NFT_REG32_05
	reg32_06   = unix.NFT_REG32_06
)

// masqMark is the packet mark bit that asks nat-postrouting to masquerade.
const masqMark = 0x4000

func native32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}

// family-dependent pieces of a rule.
type fam struct {
	name     string // "ip" or "ip6"
	nfproto  byte
	saddrOff uint32
	daddrOff uint32
	addrLen  uint32
	// registers of the fields after a leading address in a concatenation
	protoReg, portReg, indexReg uint32
	// register of the port in a looked-up "address . port" value
	valuePortReg uint32
}

var (
	fam4 = fam{name: "ip", nfproto: unix.NFPROTO_IPV4, saddrOff: 12, daddrOff: 16, addrLen: 4,
		protoReg: reg32_01, portReg: reg32_02, indexReg: reg32_03, valuePortReg: reg32_01}
	fam6 = fam{name: "ip6", nfproto: unix.NFPROTO_IPV6, saddrOff: 8, daddrOff: 24, addrLen: 16,
		protoReg: reg32_04, portReg: reg32_05, indexReg: reg32_06, valuePortReg: reg32_04}
)

func (f fam) natFamily() uint32 { return uint32(f.nfproto) }

// regs is how many 32-bit registers an address takes.
func (f fam) regs() int { return int(f.addrLen / 4) }

func (f fam) nfprotoName() string {
	if f.nfproto == unix.NFPROTO_IPV4 {
		return "ipv4"
	}
	return "ipv6"
}

// nfprotoIs: "meta nfproto ipv4" (implicit in nft before "ip daddr" in an
// inet table).
func (f fam) nfprotoIs() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.nfproto}},
	}
}

// daddr: "ip daddr" into reg 1.
func (f fam) daddr() expr.Any {
	return &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen}
}

func l4proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

func thDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func numgen(reg uint32, k, offset int) expr.Any {
	return &expr.Numgen{Register: reg, Modulus: uint32(k), Type: unix.NFT_NG_RANDOM, Offset: uint32(offset)}
}

// r32 is the n-th 32-bit register.
func r32(n int) uint32 { return unix.NFT_REG32_00 + uint32(n) }

func vmap(set string) expr.Any {
	return &expr.Lookup{SourceRegister: reg1, SetName: set, IsDestRegSet: true, DestRegister: regVerdict}
}

func lookup(set string) expr.Any { return &expr.Lookup{SourceRegister: reg1, SetName: set} }

func mapInto(set string) expr.Any {
	return &expr.Lookup{SourceRegister: reg1, SetName: set, IsDestRegSet: true, DestRegister: reg1}
}

func dnat(f fam) expr.Any {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily(), RegAddrMin: reg1, RegProtoMin: f.valuePortReg}
}

func verdict(kind expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// jumpRule: "jump <chain>".
func jumpRule(chain string) Rule {
	return Rule{Text: "jump " + chain, Exprs: []expr.Any{verdict(expr.VerdictJump, chain)}}
}

// ctNewJumpRule: "ct state new jump <chain>".
func ctNewJumpRule(chain string) Rule {
	return Rule{
		Text: "ct state new jump " + chain,
		Exprs: []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(expr.CtStateBitNEW), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
			verdict(expr.VerdictJump, chain),
		},
	}
}

// addrPortVmapRule: "ip daddr . meta l4proto . th dport vmap @<set>".
func addrPortVmapRule(f fam, set string) Rule {
	exprs := append(f.nfprotoIs(), f.daddr(), l4proto(f.protoReg), thDport(f.portReg), vmap(set))
	return Rule{Text: f.name + " daddr . meta l4proto . th dport vmap @" + set, Exprs: exprs}
}

// nodePortVmapRule: "ip daddr @<ips> meta l4proto . th dport vmap @<set>".
func nodePortVmapRule(f fam, ips, set string) Rule {
	exprs := append(f.nfprotoIs(), f.daddr(), lookup(ips), l4proto(reg1), thDport(reg32_01), vmap(set))
	return Rule{Text: f.name + " daddr @" + ips + " meta l4proto . th dport vmap @" + set, Exprs: exprs}
}

// addrInSetGotoRule: "ip daddr @<set> goto <chain>".
func addrInSetGotoRule(f fam, set, chain string) Rule {
	exprs := append(f.nfprotoIs(), f.daddr(), lookup(set), verdict(expr.VerdictGoto, chain))
	return Rule{Text: f.name + " daddr @" + set + " goto " + chain, Exprs: exprs}
}

// addrInSetDropRule: "ip daddr @<set> drop".
func addrInSetDropRule(f fam, set string) Rule {
	exprs := append(f.nfprotoIs(), f.daddr(), lookup(set), verdict(expr.VerdictDrop, ""))
	return Rule{Text: f.name + " daddr @" + set + " drop", Exprs: exprs}
}

// pickDNATRule picks one of the frontend's K endpoints at random and DNATs
// to it. By frontend address (service-K and kinds alike):
//
//	dnat ip to ip daddr . meta l4proto . th dport . numgen random mod K map @service-endpoints
//
// by NodePort (nodeport-K and kinds alike):
//
//	meta nfproto ipv4 dnat ip to meta l4proto . th dport . numgen random mod K map @nodeport-endpoints
//
// Kinds that pick among local endpoints add "offset 65536" to numgen.
func pickDNATRule(f fam, s ChainSpec) Rule {
	off := s.Kind.offset()
	set := f.endpointMap(s.Kind)
	if s.Kind.byFrontendAddr() {
		exprs := append(f.nfprotoIs(), f.daddr(), l4proto(f.protoReg), thDport(f.portReg), numgen(f.indexReg, s.K, off), mapInto(set), dnat(f))
		return Rule{
			Text:  fmt.Sprintf("dnat %s to %s daddr . meta l4proto . th dport . %s map @%s", f.name, f.name, numgenText(s.K, off), set),
			Exprs: exprs,
		}
	}
	exprs := append(f.nfprotoIs(), l4proto(reg1), thDport(reg32_01), numgen(reg32_02, s.K, off), mapInto(set), dnat(f))
	return Rule{
		Text:  fmt.Sprintf("meta nfproto %s dnat %s to meta l4proto . th dport . %s map @%s", f.nfprotoName(), f.name, numgenText(s.K, off), set),
		Exprs: exprs,
	}
}

func numgenText(k, off int) string {
	if off == 0 {
		return fmt.Sprintf("numgen random mod %d", k)
	}
	return fmt.Sprintf("numgen random mod %d offset %d", k, off)
}

// Session affinity. The three rules of an affinity chain run a register
// program that nft's syntax cannot spell in one line; with $client = "ip
// saddr . ip daddr . meta l4proto . th dport" (the client and the
// frontend; NodePorts use the node address as daddr) and T the timeout:
//
//	hit:    $ep = $client map @affinity; ip daddr . meta l4proto . th dport . $ep @affinity-members
//	        update @affinity { $client timeout Ts : $ep }; dnat ip to $ep
//	forget: delete @affinity { $client }   (absent, or its endpoint left the Service)
//	pick:   $ep = <pickDNATRule's choice>; update @affinity { $client timeout Ts : $ep }; dnat ip to $ep
//
// The member check keeps a removed endpoint from being reused: its member
// element goes with it. Registers: the address takes a (1 or 4) 32-bit
// registers; saddr at 0, daddr at a, protocol at 2a, port at 2a+1, the
// remembered endpoint (address, port) from 2a+2, a fresh choice from 2a+3.

// affinityClient loads "ip saddr . ip daddr . meta l4proto . th dport"
// into registers 0 … 2a+1.
func (f fam) affinityClient() []expr.Any {
	a := f.regs()
	return []expr.Any{
		&expr.Payload{DestRegister: r32(0), Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
		&expr.Payload{DestRegister: r32(a), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		l4proto(r32(2 * a)),
		thDport(r32(2*a + 1)),
	}
}

func (f fam) memberSet(k ChainKind) string {
	switch {
	case k.byFrontendAddr() && f.nfproto == unix.NFPROTO_IPV4:
		return SetAffinityMembers
	case k.byFrontendAddr():
		return SetAffinityMembers6
	case f.nfproto == unix.NFPROTO_IPV4:
		return SetNodePortAffinityMembers
	}
	return SetNodePortAffinityMembers6
}

func (f fam) affinityMap() string {
	if f.nfproto == unix.NFPROTO_IPV4 {
		return MapAffinity
	}
	return MapAffinity6
}

func (f fam) endpointMap(k ChainKind) string {
	v4 := f.nfproto == unix.NFPROTO_IPV4
	switch {
	case k.byFrontendAddr() && v4:
		return MapServiceEndpoints
	case k.byFrontendAddr():
		return MapServiceEndpoints6
	case v4:
		return MapNodePortEndpoints
	}
	return MapNodePortEndpoints6
}

func (s ChainSpec) affinityText(f fam) string {
	return fmt.Sprintf("%s saddr . %s daddr . meta l4proto . th dport timeout %ds", f.name, f.name, s.Affinity)
}

// affinityHitRule: DNAT to the remembered endpoint while it is a member.
func affinityHitRule(f fam, s ChainSpec) Rule {
	a := f.regs()
	ep := r32(2*a + 2)
	memberSrc := r32(a)
	if !s.Kind.byFrontendAddr() {
		memberSrc = r32(2 * a)
	}
	exprs := append(f.nfprotoIs(), f.affinityClient()...)
	exprs = append(exprs,
		&expr.Lookup{SourceRegister: r32(0), SetName: f.affinityMap(), IsDestRegSet: true, DestRegister: ep},
		&expr.Lookup{SourceRegister: memberSrc, SetName: f.memberSet(s.Kind)},
		&expr.Dynset{SrcRegKey: r32(0), SrcRegData: ep, SetName: f.affinityMap(), Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: time.Duration(s.Affinity) * time.Second},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily(), RegAddrMin: ep, RegProtoMin: r32(3*a + 2)},
	)
	return Rule{
		Text: fmt.Sprintf("%s saddr . %s daddr . meta l4proto . th dport map @%s @%s update @%s { %s } dnat %s to remembered endpoint",
			f.name, f.name, f.affinityMap(), f.memberSet(s.Kind), f.affinityMap(), s.affinityText(f), f.name),
		Exprs: exprs,
	}
}

// nftDynsetOpDelete is NFT_DYNSET_OP_DELETE (kernel 5.18+).
const nftDynsetOpDelete = 2

// affinityForgetRule: "delete @affinity { ip saddr . ip daddr . meta
// l4proto . th dport }", reached when the hit rule did not match: the
// remembered endpoint, if any, is gone, and "update" would keep it.
func affinityForgetRule(f fam) Rule {
	a := f.regs()
	exprs := append(f.nfprotoIs(), f.affinityClient()...)
	// The kernel wants an initialised data register for any dynset on a
	// map; delete does not read it. As nft does, load "ip daddr . th dport".
	exprs = append(exprs,
		&expr.Payload{DestRegister: r32(2*a + 2), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		thDport(r32(3*a+2)),
		&expr.Dynset{SrcRegKey: r32(0), SrcRegData: r32(2*a + 2), SetName: f.affinityMap(), Operation: nftDynsetOpDelete})
	return Rule{
		Text:  fmt.Sprintf("delete @%s { %s saddr . %s daddr . meta l4proto . th dport }", f.affinityMap(), f.name, f.name),
		Exprs: exprs,
	}
}

// affinityPickRule: a fresh random choice, remembered.
func affinityPickRule(f fam, s ChainSpec) Rule {
	a := f.regs()
	idx := r32(2*a + 2)
	ep := r32(2*a + 3)
	src := r32(a)
	if !s.Kind.byFrontendAddr() {
		src = r32(2 * a)
	}
	set := f.endpointMap(s.Kind)
	exprs := append(f.nfprotoIs(), f.affinityClient()...)
	exprs = append(exprs,
		numgen(idx, s.K, s.Kind.offset()),
		&expr.Lookup{SourceRegister: src, SetName: set, IsDestRegSet: true, DestRegister: ep},
		&expr.Dynset{SrcRegKey: r32(0), SrcRegData: ep, SetName: f.affinityMap(), Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: time.Duration(s.Affinity) * time.Second},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily(), RegAddrMin: ep, RegProtoMin: r32(3*a + 3)},
	)
	keyText := f.name + " daddr . meta l4proto . th dport"
	if !s.Kind.byFrontendAddr() {
		keyText = "meta l4proto . th dport"
	}
	choice := fmt.Sprintf("%s . %s map @%s", keyText, numgenText(s.K, s.Kind.offset()), set)
	return Rule{
		Text:  fmt.Sprintf("update @%s { %s : %s } dnat %s to the same", f.affinityMap(), s.affinityText(f), choice, f.name),
		Exprs: exprs,
	}
}

// hairpinRule: "ct status dnat ip saddr . ip daddr @hairpin-pairs
// masquerade fully-random": a Pod whose connection came back to itself.
func hairpinRule(f fam, set string) Rule {
	a := f.regs()
	exprs := append(f.nfprotoIs(),
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(ipsDstNAT), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: native32(0)},
		&expr.Payload{DestRegister: r32(0), Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
		&expr.Payload{DestRegister: r32(a), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		lookup(set),
		&expr.Masq{FullyRandom: true},
	)
	return Rule{Text: fmt.Sprintf("ct status dnat %s saddr . %s daddr @%s masquerade fully-random", f.name, f.name, set), Exprs: exprs}
}

// ipsDstNAT is the conntrack status bit IPS_DST_NAT.
const ipsDstNAT = 0x20

// firewallRule: "ip daddr . meta l4proto . th dport @firewall-ips ip
// daddr . meta l4proto . th dport . ip saddr != @firewall-allow drop".
func firewallRule(f fam, ips, allow string) Rule {
	a := f.regs()
	exprs := append(f.nfprotoIs(), f.daddr(), l4proto(f.protoReg), thDport(f.portReg), lookup(ips),
		&expr.Payload{DestRegister: r32(a + 2), Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
		&expr.Lookup{SourceRegister: reg1, SetName: allow, Invert: true},
		verdict(expr.VerdictDrop, ""),
	)
	return Rule{
		Text:  fmt.Sprintf("%s daddr . meta l4proto . th dport @%s %s daddr . meta l4proto . th dport . %s saddr != @%s drop", f.name, ips, f.name, f.name, allow),
		Exprs: exprs,
	}
}

func (f fam) saddrIn(set string) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
		lookup(set),
	}
}

// fibSaddrLocal: "fib saddr type local".
func fibSaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagSADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(unix.RTN_LOCAL)},
	}
}

func (f fam) addrPortVmap(set string) []expr.Any {
	return []expr.Any{f.daddr(), l4proto(f.protoReg), thDport(f.portReg), vmap(set)}
}

func portVmap(set string) []expr.Any {
	return []expr.Any{l4proto(reg1), thDport(reg32_01), vmap(set)}
}

// fromPodsAddrPortVmapRule: "ip saddr @pod-cidrs ip daddr . meta l4proto .
// th dport vmap @<set>".
func fromPodsAddrPortVmapRule(f fam, pods, set string) Rule {
	exprs := append(append(f.nfprotoIs(), f.saddrIn(pods)...), f.addrPortVmap(set)...)
	return Rule{Text: fmt.Sprintf("%s saddr @%s %s daddr . meta l4proto . th dport vmap @%s", f.name, pods, f.name, set), Exprs: exprs}
}

// fromPodsPortVmapRule: "ip saddr @pod-cidrs meta l4proto . th dport vmap
// @<set>".
func fromPodsPortVmapRule(f fam, pods, set string) Rule {
	exprs := append(append(f.nfprotoIs(), f.saddrIn(pods)...), portVmap(set)...)
	return Rule{Text: fmt.Sprintf("%s saddr @%s meta l4proto . th dport vmap @%s", f.name, pods, set), Exprs: exprs}
}

// fromNodeMarkRule: "fib saddr type local meta mark set meta mark |
// 0x4000": the node's own traffic to an external address is masqueraded.
func fromNodeMarkRule() Rule {
	return Rule{
		Text:  fmt.Sprintf("fib saddr type local meta mark set meta mark | %#x", masqMark),
		Exprs: append(fibSaddrLocal(), setMasqMarkRule().Exprs...),
	}
}

// fromNodeAddrPortVmapRule: "fib saddr type local ip daddr . meta l4proto
// . th dport vmap @<set>".
func fromNodeAddrPortVmapRule(f fam, set string) Rule {
	exprs := append(append(f.nfprotoIs(), fibSaddrLocal()...), f.addrPortVmap(set)...)
	return Rule{Text: fmt.Sprintf("fib saddr type local %s daddr . meta l4proto . th dport vmap @%s", f.name, set), Exprs: exprs}
}

// fromNodePortVmapRule: "fib saddr type local meta nfproto ipv4 meta
// l4proto . th dport vmap @<set>".
func fromNodePortVmapRule(f fam, set string) Rule {
	exprs := append(append(f.nfprotoIs(), fibSaddrLocal()...), portVmap(set)...)
	return Rule{Text: fmt.Sprintf("fib saddr type local meta nfproto %s meta l4proto . th dport vmap @%s", f.nfprotoName(), set), Exprs: exprs}
}

// portVmapRule: "meta nfproto ipv4 meta l4proto . th dport vmap @<set>".
func portVmapRule(f fam, set string) Rule {
	exprs := append(f.nfprotoIs(), portVmap(set)...)
	return Rule{Text: fmt.Sprintf("meta nfproto %s meta l4proto . th dport vmap @%s", f.nfprotoName(), set), Exprs: exprs}
}

// setMasqMarkRule: "meta mark set meta mark | 0x4000".
func setMasqMarkRule() Rule {
	return Rule{
		Text: fmt.Sprintf("meta mark set meta mark | %#x", masqMark),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(masqMark)), Xor: native32(masqMark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		},
	}
}

// returnUnlessMarkedRule: "meta mark & 0x4000 == 0 return".
func returnUnlessMarkedRule() Rule {
	return Rule{
		Text: fmt.Sprintf("meta mark & %#x == 0 return", masqMark),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(masqMark), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(0)},
			verdict(expr.VerdictReturn, ""),
		},
	}
}

// clearMasqMarkRule: "meta mark set meta mark ^ 0x4000", so a packet
// looping through the node again is not masqueraded twice.
func clearMasqMarkRule() Rule {
	return Rule{
		Text: fmt.Sprintf("meta mark set meta mark ^ %#x", masqMark),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(0)), Xor: native32(masqMark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		},
	}
}

// masqueradeRule: "masquerade fully-random".
func masqueradeRule() Rule {
	return Rule{Text: "masquerade fully-random", Exprs: []expr.Any{&expr.Masq{FullyRandom: true}}}
}

// rejectTCPRule: "meta l4proto tcp reject with tcp reset".
func rejectTCPRule() Rule {
	return Rule{
		Text: "meta l4proto tcp reject with tcp reset",
		Exprs: []expr.Any{
			l4proto(reg1),
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		},
	}
}

// rejectRule: "reject with icmpx port-unreachable".
func rejectRule() Rule {
	return Rule{
		Text:  "reject with icmpx port-unreachable",
		Exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}},
	}
}
