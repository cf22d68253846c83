package render

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rule is one nftables rule: the expressions the kernel runs and the nft
// text they stand for, exactly as `nft list` prints those expressions.
// Text and a hash of the expressions are stored in the kernel as the
// rule's comment (see Comment), which is how the dataplane recognises its
// own rules.
type Rule struct {
	Text  string
	Exprs []expr.Any
	// Untyped: nft prints the constants of this rule's looked-up
	// concatenation as untyped hex and cannot read Text back (see
	// affinityRule), so Table.String shows Text as an nft comment.
	Untyped bool
}

// MaxComment is the longest comment a rule carries: the kernel keeps at
// most NFT_USERDATA_MAXLEN (256) bytes of a rule's user data, of which the
// comment's type, length and closing NUL take 3.
const MaxComment = 253

// keySep separates a comment's text from its key.
const keySep = " #"

// Key is a short hash of the rule's expressions as the kernel receives
// them (8 hex digits of the SHA-256 of their netlink encodings): any
// change to the expressions changes it, whatever Text says.
func (r Rule) Key() string {
	h := sha256.New()
	for _, e := range r.Exprs {
		b, err := expr.Marshal(byte(unix.NFPROTO_INET), e)
		if err != nil {
			b = fmt.Appendf(nil, "%T: %v", e, err) // unencodable: still told apart
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}

// Comment is what the kernel stores as the rule's comment, and how the
// dataplane recognises its rules: Text, then " #" and Key ("ip daddr . meta
// l4proto . th dport vmap @service-ips #1a2b3c4d"), the text cut short
// ("...") when the whole would pass MaxComment. A rule whose expressions
// change gets another comment even if its Text stays the same.
func (r Rule) Comment() string {
	key := keySep + r.Key()
	text := r.Text
	if len(text)+len(key) > MaxComment {
		const more = "..."
		n := MaxComment - len(key) - len(more)
		for n > 0 && !utf8.RuneStart(text[n]) {
			n--
		}
		text = text[:n] + more
	}
	return text + key
}

// CommentText is the text of a comment Comment made: the comment without
// its key.
func CommentText(comment string) string {
	if i := strings.LastIndex(comment, keySep); i >= 0 {
		return comment[:i]
	}
	return comment
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

// markText is a mark as nft prints it: 32 bits in hex, "0x00004000".
func markText(v uint32) string { return fmt.Sprintf("0x%08x", v) }

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

// Session affinity, as upstream's nftables mode remembers it: per endpoint,
// "which clients went there", in a set with per-element timeouts, so that
// nothing but the kernel's own set lookup tells where a client goes and a
// removed endpoint's memory is never reached. A per-endpoint-count chain
// with affinity asks each of the frontend's K endpoints in turn through the
// member map (a jump that returns when the client is not remembered there),
// then picks one at random:
//
//	ip daddr . meta l4proto . th dport . numgen random mod 1 vmap @affinity-members
//	ip daddr . meta l4proto . th dport . numgen random mod 1 offset 1 vmap @affinity-members
//	…
//	ip daddr . meta l4proto . th dport . numgen random mod 1 offset K-1 vmap @affinity-members
//	ip daddr . meta l4proto . th dport . numgen random mod K offset 131072 vmap @affinity-members
//
// Index i is "numgen random mod 1 offset i", which is always i: nft reads
// no constant inside a concatenation it looks up (it has no type to read
// it as), and prints one as untyped hex, so a plain "i" could be neither
// written nor listed as nft syntax.
//
// (NodePorts: "meta l4proto . th dport . <index> vmap
// @nodeport-affinity-members";
// kinds that pick among local endpoints add 65536 to every index). The
// member map sends index i to the endpoint's affinity chain (jump) and
// 131072 + i to its pick chain (goto); see affinityRule. The memory is keyed
// by the client and the frontend it asked for ("ip saddr . ip daddr . th
// dport", the node address for NodePorts, one set per protocol), so it is
// per Service port, and ends T seconds after the client's last new
// connection. A new connection costs one lookup per endpoint tried: nft
// cannot print a rule that feeds what a map lookup returned into another
// lookup or a set update, so the remembered endpoint cannot be read from a
// map and checked in one step.

// memberKey loads the frontend and an index for a member map lookup: "ip
// daddr . meta l4proto . th dport . <index>" or "meta l4proto . th dport .
// <index>", and returns it with its nft text.
func memberKey(f fam, s ChainSpec, index expr.Any) ([]expr.Any, string) {
	if s.Kind.byFrontendAddr() {
		return append(f.nfprotoIs(), f.daddr(), l4proto(f.protoReg), thDport(f.portReg), index),
			f.name + " daddr . meta l4proto . th dport"
	}
	return append(f.nfprotoIs(), l4proto(reg1), thDport(reg32_01), index),
		"meta nfproto " + f.nfprotoName() + " meta l4proto . th dport"
}

func (f fam) memberIndexReg(k ChainKind) uint32 {
	if k.byFrontendAddr() {
		return f.indexReg
	}
	return reg32_02
}

// affinityMemberRule: "ip daddr . meta l4proto . th dport . numgen random
// mod 1 offset <i> vmap @affinity-members": to endpoint i's affinity
// chain, which DNATs when it remembers the client.
func affinityMemberRule(f fam, s ChainSpec, i int) Rule {
	idx := s.Kind.offset() + i
	exprs, text := memberKey(f, s, numgen(f.memberIndexReg(s.Kind), 1, idx))
	return Rule{
		Text:  fmt.Sprintf("%s . %s vmap @%s", text, numgenText(1, idx), f.memberSet(s.Kind)),
		Exprs: append(exprs, vmap(f.memberSet(s.Kind))),
	}
}

// affinityMemberPickRule: "ip daddr . meta l4proto . th dport . numgen
// random mod K offset 131072 vmap @affinity-members": to a random
// endpoint's pick chain.
func affinityMemberPickRule(f fam, s ChainSpec) Rule {
	off := affinityPickOffset + s.Kind.offset()
	exprs, text := memberKey(f, s, numgen(f.memberIndexReg(s.Kind), s.K, off))
	return Rule{
		Text:  fmt.Sprintf("%s . %s vmap @%s", text, numgenText(s.K, off), f.memberSet(s.Kind)),
		Exprs: append(exprs, vmap(f.memberSet(s.Kind))),
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

// AffinitySet is the set that remembers the clients of endpoints of that
// protocol number and family.
func AffinitySet(proto byte, v6 bool) string {
	sets := map[byte][2]string{
		unix.IPPROTO_TCP:  {SetAffinityTCP, SetAffinityTCP6},
		unix.IPPROTO_UDP:  {SetAffinityUDP, SetAffinityUDP6},
		unix.IPPROTO_SCTP: {SetAffinitySCTP, SetAffinitySCTP6},
	}[proto]
	if v6 {
		return sets[1]
	}
	return sets[0]
}

// affinityRule is the one rule of an endpoint's affinity chain. With
// $client = "ip saddr . ip daddr . tcp dport . <endpoint address> .
// <endpoint port>" (the client, the frontend it asked for, the endpoint)
// and T the timeout as nft prints it ("3h", "1m30s"):
//
//	affinity-tcp-10.244.1.10-80-T:      $client @affinity-tcp update @affinity-tcp { $client timeout T } dnat ip to 10.244.1.10:80
//	affinity-pick-tcp-10.244.1.10-80-T: update @affinity-tcp { $client timeout T } dnat ip to 10.244.1.10:80
//
// The rule matches the chain's protocol first ("meta l4proto tcp", which
// nft folds into "tcp dport"): nft asks for it before a DNAT to a port,
// though the member maps send only that protocol there.
//
// The lookup of the first is the one rule nft cannot express: it neither
// reads the endpoint's address and port inside the looked-up
// concatenation nor prints them as such ("0xaf4010a [invalid type]"), so
// its text is what nft would print if it knew their types, as it does in
// the update.
func affinityRule(s ChainSpec) Rule {
	e := s.Endpoint
	f, to := fam4, e.Addr.String()+":"+strconv.Itoa(int(e.Port))
	if e.Addr.Is6() {
		f, to = fam6, "["+e.Addr.String()+"]:"+strconv.Itoa(int(e.Port))
	}
	set := AffinitySet(e.Proto, e.Addr.Is6())
	a := f.regs()
	addrReg, portReg := r32(2*a+1), r32(3*a+1)
	exprs := append(f.nfprotoIs(),
		l4proto(reg1),
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{e.Proto}},
		&expr.Payload{DestRegister: r32(0), Base: expr.PayloadBaseNetworkHeader, Offset: f.saddrOff, Len: f.addrLen},
		&expr.Payload{DestRegister: r32(a), Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		thDport(r32(2*a)),
		&expr.Immediate{Register: addrReg, Data: e.Addr.AsSlice()},
		&expr.Immediate{Register: portReg, Data: binary.BigEndian.AppendUint16(nil, e.Port)},
	)
	key := fmt.Sprintf("%s saddr . %s daddr . %s dport . %s . %d", f.name, f.name, protoNames[e.Proto], e.Addr, e.Port)
	update := fmt.Sprintf("update @%s { %s timeout %s } dnat %s to %s", set, key, secondsText(int(s.Affinity)), f.name, to)
	text := update
	if s.Kind == KindAffinity {
		exprs = append(exprs, &expr.Lookup{SourceRegister: r32(0), SetName: set})
		text = key + " @" + set + " " + update
	}
	exprs = append(exprs,
		&expr.Dynset{SrcRegKey: r32(0), SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: time.Duration(s.Affinity) * time.Second},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily(), RegAddrMin: addrReg, RegProtoMin: portReg},
	)
	return Rule{Text: text, Exprs: exprs, Untyped: s.Kind == KindAffinity}
}

// secondsText is a duration in seconds as nft prints it: "3h", "1m30s",
// "1d".
func secondsText(n int) string {
	var b strings.Builder
	for _, u := range []struct {
		secs int
		unit string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if n >= u.secs {
			fmt.Fprintf(&b, "%d%s", n/u.secs, u.unit)
			n %= u.secs
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
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

// fromNodeMarkRule: "fib saddr type local meta mark set meta mark |
// 0x00004000": the node's own traffic to an external address is
// masqueraded.
func fromNodeMarkRule() Rule {
	return Rule{
		Text:  "fib saddr type local meta mark set meta mark | " + markText(masqMark),
		Exprs: append(fibSaddrLocal(), setMasqMarkRule().Exprs...),
	}
}

// fromNodeAddrPortVmapRule: "fib saddr type local ip daddr . meta l4proto
// . th dport vmap @<set>".
func fromNodeAddrPortVmapRule(f fam, set string) Rule {
	exprs := append(append(f.nfprotoIs(), fibSaddrLocal()...), f.addrPortVmap(set)...)
	return Rule{Text: fmt.Sprintf("fib saddr type local %s daddr . meta l4proto . th dport vmap @%s", f.name, set), Exprs: exprs}
}

// fromNodePortVmapRule: "meta nfproto ipv4 fib saddr type local meta
// l4proto . th dport vmap @<set>".
func fromNodePortVmapRule(f fam, set string) Rule {
	exprs := append(append(f.nfprotoIs(), fibSaddrLocal()...), portVmap(set)...)
	return Rule{Text: fmt.Sprintf("meta nfproto %s fib saddr type local meta l4proto . th dport vmap @%s", f.nfprotoName(), set), Exprs: exprs}
}

// portVmapRule: "meta nfproto ipv4 meta l4proto . th dport vmap @<set>".
func portVmapRule(f fam, set string) Rule {
	exprs := append(f.nfprotoIs(), portVmap(set)...)
	return Rule{Text: fmt.Sprintf("meta nfproto %s meta l4proto . th dport vmap @%s", f.nfprotoName(), set), Exprs: exprs}
}

// setMasqMarkRule: "meta mark set meta mark | 0x00004000".
func setMasqMarkRule() Rule {
	return Rule{
		Text: "meta mark set meta mark | " + markText(masqMark),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(^uint32(masqMark)), Xor: native32(masqMark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		},
	}
}

// returnUnlessMarkedRule: "meta mark & 0x00004000 == 0x00000000 return".
func returnUnlessMarkedRule() Rule {
	return Rule{
		Text: fmt.Sprintf("meta mark & %s == %s return", markText(masqMark), markText(0)),
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: native32(masqMark), Xor: native32(0)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: native32(0)},
			verdict(expr.VerdictReturn, ""),
		},
	}
}

// clearMasqMarkRule: "meta mark set meta mark ^ 0x00004000", so a packet
// looping through the node again is not masqueraded twice.
func clearMasqMarkRule() Rule {
	return Rule{
		Text: "meta mark set meta mark ^ " + markText(masqMark),
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

// rejectRule: "reject", which in an inet table is nft's short form of
// "reject with icmpx port-unreachable".
func rejectRule() Rule {
	return Rule{
		Text:  "reject",
		Exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}},
	}
}
