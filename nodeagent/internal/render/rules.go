package render

import (
	"encoding/binary"
	"fmt"

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
	daddrOff uint32
	addrLen  uint32
	// registers of the fields after a leading address in a concatenation
	protoReg, portReg, indexReg uint32
	// register of the port in a looked-up "address . port" value
	valuePortReg uint32
}

var (
	fam4 = fam{name: "ip", nfproto: unix.NFPROTO_IPV4, daddrOff: 16, addrLen: 4,
		protoReg: reg32_01, portReg: reg32_02, indexReg: reg32_03, valuePortReg: reg32_01}
	fam6 = fam{name: "ip6", nfproto: unix.NFPROTO_IPV6, daddrOff: 24, addrLen: 16,
		protoReg: reg32_04, portReg: reg32_05, indexReg: reg32_06, valuePortReg: reg32_04}
)

func (f fam) natFamily() uint32 { return uint32(f.nfproto) }

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

func numgen(reg uint32, k int) expr.Any {
	return &expr.Numgen{Register: reg, Modulus: uint32(k), Type: unix.NFT_NG_RANDOM}
}

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

// serviceDNATRule: "ip daddr . meta l4proto . th dport . numgen random mod K
// map @service-endpoints" as the address and port to DNAT to; the map's
// value is "ipv4_addr . inet_service".
func serviceDNATRule(f fam, k int, set string) Rule {
	exprs := append(f.nfprotoIs(), f.daddr(), l4proto(f.protoReg), thDport(f.portReg), numgen(f.indexReg, k), mapInto(set), dnat(f))
	return Rule{
		Text:  fmt.Sprintf("dnat %s to %s daddr . meta l4proto . th dport . numgen random mod %d map @%s", f.name, f.name, k, set),
		Exprs: exprs,
	}
}

// nodePortDNATRule: "meta nfproto ipv4 dnat ip to meta l4proto . th dport .
// numgen random mod K map @nodeport-endpoints".
func nodePortDNATRule(f fam, k int, set string) Rule {
	exprs := append(f.nfprotoIs(), l4proto(reg1), thDport(reg32_01), numgen(reg32_02, k), mapInto(set), dnat(f))
	return Rule{
		Text:  fmt.Sprintf("meta nfproto ipv%s dnat %s to meta l4proto . th dport . numgen random mod %d map @%s", map[string]string{"ip": "4", "ip6": "6"}[f.name], f.name, k, set),
		Exprs: exprs,
	}
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
