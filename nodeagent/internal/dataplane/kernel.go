package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// socketBuffer is the netlink socket buffer size: a batch of 100,000
// Services is several MB of messages and acknowledgements, more than the
// default buffers hold (ENOBUFS).
const socketBuffer = 32 << 20

// maxElementBytes bounds the encoded elements of one NEWSETELEM/DELSETELEM
// message. Netlink attribute lengths are 16 bits: a larger element list
// overflows and the kernel answers with a misleading ENOENT.
const maxElementBytes = 48 << 10

func enlargeBuffers(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		// The FORCE variants ignore rmem_max/wmem_max (needs CAP_NET_ADMIN).
		for _, opt := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, socketBuffer); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		// Without CAP_NET_ADMIN: the largest the sysctls allow.
		if err := c.SetReadBuffer(socketBuffer); err != nil {
			return err
		}
		return c.SetWriteBuffer(socketBuffer)
	}
	return nil
}

// nftType maps a render field type to the nftables datatype.
func nftType(t render.Type) nftables.SetDatatype {
	switch t {
	case render.TypeIPv4:
		return nftables.TypeIPAddr
	case render.TypeIPv6:
		return nftables.TypeIP6Addr
	case render.TypeProto:
		return nftables.TypeInetProto
	case render.TypePort:
		return nftables.TypeInetService
	case render.TypeIndex:
		// mark: nft's 32-bit host-order integer (see render.TypeIndex).
		return nftables.TypeMark
	case render.TypeVerdict:
		return nftables.TypeVerdict
	}
	return nftables.TypeInvalid
}

func nftTypes(ts []render.Type) nftables.SetDatatype {
	if len(ts) == 1 {
		return nftType(ts[0])
	}
	parts := make([]nftables.SetDatatype, len(ts))
	for i, t := range ts {
		parts[i] = nftType(t)
	}
	return nftables.MustConcatSetType(parts...)
}

func paddedLen(ts []render.Type) uint32 {
	if len(ts) == 1 {
		return uint32(ts[0].Len())
	}
	var n uint32
	for _, t := range ts {
		n += uint32((t.Len() + 3) &^ 3)
	}
	return n
}

// affinitySize bounds the kernel's session affinity memory (clients ×
// frontends); the kernel refuses new entries beyond it and the choice is
// then made afresh per connection.
const affinitySize = 1 << 20

func nftSet(table *nftables.Table, s render.Set) *nftables.Set {
	ns := &nftables.Set{
		Table:         table,
		Name:          s.Name,
		KeyType:       nftTypes(s.Key),
		Concatenation: len(s.Key) > 1,
		IsMap:         s.IsMap(),
		Interval:      s.Interval,
	}
	if s.Dynamic {
		ns.Dynamic = true
		ns.HasTimeout = true
		ns.Size = affinitySize
	}
	if s.IsMap() {
		ns.DataType = nftTypes(s.Data)
	}
	return ns
}

// setShapeMatches reports whether a set read from the kernel has the shape
// the layout wants. google/nftables reports a verdict map's data type in
// KeyType (and loses the key type), so for those only the flags count.
func setShapeMatches(k *nftables.Set, want render.Set) bool {
	if k.IsMap != want.IsMap() || k.Interval != want.Interval || k.HasTimeout != want.Dynamic || k.Constant || k.Anonymous {
		return false
	}
	kernelVerdict := k.IsMap && (k.KeyType.Name == "verdict" || k.DataType.Name == "verdict")
	if kernelVerdict != want.IsVerdictMap() {
		return false
	}
	if kernelVerdict {
		return k.KeyType.Name == "verdict" || k.KeyType.Bytes == paddedLen(want.Key)
	}
	if k.KeyType.Bytes != paddedLen(want.Key) {
		return false
	}
	return !want.IsMap() || k.DataType.Bytes == paddedLen(want.Data)
}

var hooks = map[string]*nftables.ChainHook{
	"prerouting":  nftables.ChainHookPrerouting,
	"input":       nftables.ChainHookInput,
	"forward":     nftables.ChainHookForward,
	"output":      nftables.ChainHookOutput,
	"postrouting": nftables.ChainHookPostrouting,
}

func nftChain(table *nftables.Table, c render.Chain) *nftables.Chain {
	nc := &nftables.Chain{Table: table, Name: c.Name}
	if c.Hook != nil {
		nc.Hooknum = hooks[c.Hook.Hook]
		nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Hook.Priority))
		nc.Type = nftables.ChainType(c.Hook.Type)
		accept := nftables.ChainPolicyAccept
		nc.Policy = &accept
	}
	return nc
}

// chainHookMatches compares a kernel chain's hook with the wanted one.
func chainHookMatches(k *nftables.Chain, want render.Chain) bool {
	if want.Hook == nil {
		return k.Hooknum == nil
	}
	if k.Hooknum == nil || k.Priority == nil {
		return false
	}
	return *k.Hooknum == *hooks[want.Hook.Hook] &&
		int(*k.Priority) == want.Hook.Priority &&
		string(k.Type) == want.Hook.Type &&
		(k.Policy == nil || *k.Policy == nftables.ChainPolicyAccept)
}

// ruleComment is how a rule carries its nft text and the hash of its
// expressions into the kernel (see render.Rule.Comment).
func ruleComment(r render.Rule) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, r.Comment())
}

// kernelComment is a kernel rule's comment, "" when it has none.
func kernelComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// ruleText is a kernel rule's nft text: its comment less the key.
func ruleText(r *nftables.Rule) string { return render.CommentText(kernelComment(r)) }

// rulesMatch reports whether the kernel's rules of a chain are the wanted
// ones: same comments (text and the hash of the expressions they were
// written from) and expression counts, in order. A rule written from other
// expressions, or by a version that stored only the text, does not match.
func rulesMatch(kernel []*nftables.Rule, want []render.Rule) bool {
	if len(kernel) != len(want) {
		return false
	}
	for i, r := range kernel {
		if len(r.Exprs) != len(want[i].Exprs) || kernelComment(r) != want[i].Comment() {
			return false
		}
	}
	return true
}

// elementFromKernel converts an element read from the kernel to render's
// form. A verdict map's value arrives as the nested verdict attributes.
func elementFromKernel(set render.Set, e nftables.SetElement) (render.Element, error) {
	out := render.Element{Set: set.Name, Key: e.Key, KeyEnd: e.KeyEnd, IntervalEnd: e.IntervalEnd}
	switch {
	case set.IsVerdictMap():
		v, err := decodeVerdict(e.Val)
		if err != nil {
			return render.Element{}, fmt.Errorf("set %s: %w", set.Name, err)
		}
		out.Verdict = v
	case set.IsMap():
		out.Value = e.Val
	}
	return out, nil
}

func decodeVerdict(b []byte) (*expr.Verdict, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, fmt.Errorf("decode verdict: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	v := &expr.Verdict{}
	seen := false
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
			seen = true
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("decode verdict: %w", err)
	}
	if !seen {
		return nil, errors.New("decode verdict: no verdict code")
	}
	return v, nil
}

func toSetElement(e render.Element) nftables.SetElement {
	return nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, IntervalEnd: e.IntervalEnd, Val: e.Value, VerdictData: e.Verdict}
}

// elementSize estimates an element's encoded size, attribute headers
// included.
func elementSize(e render.Element) int {
	n := 48 + len(e.Key) + len(e.Value)
	if e.KeyEnd != nil {
		n += 16 + len(e.KeyEnd)
	}
	if e.Verdict != nil {
		n += 16 + len(e.Verdict.Chain)
	}
	return n
}

func isEBUSY(err error) bool { return errors.Is(err, syscall.EBUSY) }

func isENOENT(err error) bool { return errors.Is(err, syscall.ENOENT) }
