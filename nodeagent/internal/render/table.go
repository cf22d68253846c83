package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Table is the whole of doorman's table for one view.
type Table struct {
	Sets   []Set
	Chains []Chain
	// Elements in no particular order; a shared element appears once.
	Elements []Element
	// Owners counts, for each shared element, the entries owning it.
	Owners map[SharedID]int
	// Invalid lists the entries left out whole because they cannot be
	// rendered, with the reason.
	Invalid map[string]error
	// Refused lists the entries programmed without some of their
	// frontends, which other entries own (see Claims), with the reason.
	Refused map[string]error
	// Claims records who owns each frontend, for Claims.Plan to move the
	// table on from here.
	Claims *Claims
	// ChainUsers counts, for each per-endpoint-count chain in Chains, the
	// entries whose elements jump to it.
	ChainUsers map[string]int
}

// View renders a whole view (the Node entry plus every ServicePort entry).
// An entry that cannot be rendered is left out and reported in Invalid; an
// entry that claims a frontend another entry owns is rendered without it
// and reported in Refused; the others are rendered regardless.
//
// Every entry renders straight into one element slice whose keys and values
// share large byte chunks; claims and shared owners are tracked with
// fixed-size keys, so an element costs no allocation of its own. Claims
// are decided once every entry is rendered (a ClusterIP takes its frontend
// from an external address whatever the keys' order), then each entry's
// elements are kept, less those of the frontends it does not own.
func View(view map[string]*doormanv1.Entry) *Table { return Options{}.View(view) }

// View renders a whole view with these Options (see View). A large view
// is rendered in parts, one per CPU, each into its own stretch of the one
// element slice; claims are then added, and elements kept, in the keys'
// order, as if one builder had rendered it all.
func (o Options) View(view map[string]*doormanv1.Entry) *Table {
	keys, est := sortedEntries(view, estimateEntry)
	return o.renderParts(keys, est, partsFor(len(keys)))
}

// renderParts renders the sorted entries, whose elements est bounds, in
// at most n parts.
func (o Options) renderParts(keys []keyedEntry, est, n int) *Table {
	t := &Table{Sets: Sets(), Owners: make(map[SharedID]int, len(keys)), Invalid: map[string]error{}, ChainUsers: map[string]int{}}
	t.Claims = &Claims{owner: make(map[frontendID]claimant, len(keys)), others: map[frontendID][]claimant{}}
	elems := make([]Element, 0, est)
	parts := splitParts(keys, elems, n)
	inParallel(len(parts), func(i int) { parts[i].render() })
	for i := range parts {
		t.claim(&parts[i])
	}
	t.Elements = t.keepOwned(elems, parts)
	t.Refused = t.Claims.Refused()
	t.Chains = append(o.StaticChains(), endpointChains(t.ChainUsers)...)
	return t
}

// inParallel runs fn(0) … fn(n-1), each on a goroutine of its own when
// there are several, and returns when all returned.
func inParallel(n int, fn func(i int)) {
	if n == 1 {
		fn(0)
		return
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fn(i) })
	}
	wg.Wait()
}

// keyedEntry is a view's entry with its key and the bound from above on
// how many elements it renders to (see estimateElements).
type keyedEntry struct {
	key   string
	entry *doormanv1.Entry
	est   int
}

// sortedEntries returns the view's entries sorted by key and, with an
// estimate (nil: none), each entry's bound on the elements it renders to
// and their sum. They are sorted with their entries: looking each key up
// again in a large view costs more than the rendering of most entries
// (and so would going over the map again for the estimate).
func sortedEntries(view map[string]*doormanv1.Entry, estimate func(*doormanv1.Entry) int) ([]keyedEntry, int) {
	keys := make([]keyedEntry, 0, len(view))
	est := 0
	for k, e := range view {
		n := 0
		if estimate != nil {
			n = estimate(e)
		}
		keys = append(keys, keyedEntry{k, e, n})
		est += n
	}
	return sortKeyed(keys), est
}

// byKey orders keyed entries by key.
func byKey(x, y keyedEntry) int { return strings.Compare(x.key, y.key) }

// sortKeyed sorts keys by key: a large view in runs, one per part (see
// partsFor), each sorted on a CPU of its own, then merged pairwise. The
// sort is a serial step of every render otherwise.
func sortKeyed(keys []keyedEntry) []keyedEntry { return sortRuns(keys, partsFor(len(keys))) }

// sortRuns is sortKeyed in n runs.
func sortRuns(keys []keyedEntry, n int) []keyedEntry {
	if n <= 1 || len(keys) < n {
		slices.SortFunc(keys, byKey)
		return keys
	}
	inParallel(n, func(i int) { slices.SortFunc(partKeys(keys, i, n), byKey) })
	bounds := make([]int, n+1)
	for i := range bounds {
		bounds[i] = len(keys) * i / n
	}
	src, dst := keys, make([]keyedEntry, len(keys))
	for len(bounds) > 2 {
		pairs := (len(bounds) - 1) / 2
		inParallel(pairs, func(p int) {
			from, mid, to := bounds[2*p], bounds[2*p+1], bounds[2*p+2]
			mergeKeyed(dst[from:to], src[from:mid], src[mid:to])
		})
		next := []int{0}
		for p := range pairs {
			next = append(next, bounds[2*p+2])
		}
		if (len(bounds)-1)%2 == 1 {
			// An odd run out: carried to the next round as it is.
			from := bounds[len(bounds)-2]
			copy(dst[from:], src[from:])
			next = append(next, len(keys))
		}
		src, dst, bounds = dst, src, next
	}
	return src
}

// mergeKeyed merges the sorted runs a and b into out, which holds both.
func mergeKeyed(out, a, b []keyedEntry) {
	i := 0
	for len(a) > 0 && len(b) > 0 {
		if byKey(b[0], a[0]) < 0 {
			out[i], b = b[0], b[1:]
		} else {
			out[i], a = a[0], a[1:]
		}
		i++
	}
	i += copy(out[i:], a)
	copy(out[i:], b)
}

// minPartEntries is the fewest entries worth a part of their own: below
// it, starting and joining a goroutine costs more than it saves.
const minPartEntries = 4096

// partsFor is how many parts a view of n entries is rendered in: one per
// CPU, each of at least minPartEntries entries, and at least one.
func partsFor(n int) int { return max(1, min(runtime.GOMAXPROCS(0), n/minPartEntries)) }

// partKeys is the i-th of n runs of keys, of about as many entries each.
func partKeys(keys []keyedEntry, i, n int) []keyedEntry {
	return keys[len(keys)*i/n : len(keys)*(i+1)/n]
}

// part is a run of consecutive entries (in key order) rendered by one
// builder into its own stretch of the view's element slice.
type part struct {
	keys []keyedEntry
	b    builder
	// at is where the part's stretch starts in the view's element slice.
	at int
	r  rendered
}

// splitParts cuts keys into n parts (at least one) of about as many
// entries each, each given the stretch of elems its entries' estimates add
// up to.
func splitParts(keys []keyedEntry, elems []Element, n int) []part {
	n = max(1, n)
	parts := make([]part, n)
	at := 0
	for i := range parts {
		run := partKeys(keys, i, n)
		est := 0
		for _, ke := range run {
			est += ke.est
		}
		// Every entry claims at least its ClusterIP: room for as many
		// claims as entries, as the one builder before parts had.
		parts[i] = part{keys: run, at: at, b: builder{elems: elems[at : at : at+est], claims: make([]Claim, 0, len(run)), chunk: 1 << 20}}
		at += est
	}
	return parts
}

// inPlace reports whether the part's elements still lie in its stretch of
// elems: they do unless an estimate fell short and append moved them.
func (p *part) inPlace(elems []Element) bool {
	return cap(p.b.elems) == 0 || unsafe.SliceData(p.b.elems) == unsafe.SliceData(elems[p.at:cap(elems)])
}

// entrySpan is where one rendered entry's elements, chains and claims lie
// in its part's builder.
type entrySpan struct {
	key                                                            string
	entry                                                          *doormanv1.Entry
	elemStart, elemEnd, chainStart, chainEnd, claimStart, claimEnd int
}

// rendered is every rendered entry's span, and the per-K chains the spans
// point into, back to back; and the entries that could not be rendered.
type rendered struct {
	spans   []entrySpan
	chains  []string
	invalid []invalidEntry
}

// invalidEntry is an entry left out, and why.
type invalidEntry struct {
	key string
	err error
}

// render renders each of the part's entries into its builder, in order.
func (p *part) render() {
	b := &p.b
	p.r = rendered{spans: make([]entrySpan, 0, len(p.keys))}
	for _, ke := range p.keys {
		start, claimStart := len(b.elems), len(b.claims)
		b.chains = b.chains[:0]
		if err := b.entry(ke.entry); err != nil {
			p.r.invalid = append(p.r.invalid, invalidEntry{ke.key, err})
			b.elems, b.claims = b.elems[:start], b.claims[:claimStart]
			continue
		}
		chainStart := len(p.r.chains)
		p.r.chains = append(p.r.chains, b.chains...)
		p.r.spans = append(p.r.spans, entrySpan{ke.key, ke.entry, start, len(b.elems), chainStart, len(p.r.chains), claimStart, len(b.claims)})
	}
}

// claim records in t the part's entries that cannot be rendered and the
// claims of those that can.
func (t *Table) claim(p *part) {
	for _, inv := range p.r.invalid {
		t.Invalid[inv.key] = inv.err
	}
	for _, s := range p.r.spans {
		for _, cl := range p.b.claims[s.claimStart:s.claimEnd] {
			t.Claims.add(cl.id, claimant{key: s.key, entry: s.entry, kind: cl.Kind})
		}
	}
}

// keepOwned keeps each entry's elements (less the frontends it lost, once
// claims are decided), counting shared owners and chain users in t. When
// every part's elements lie in elems, it compacts them there, the write
// index never passing the read index; otherwise into a new slice. It
// returns what is kept.
func (t *Table) keepOwned(elems []Element, parts []part) []Element {
	out, total := elems[:0], 0
	for i := range parts {
		total += len(parts[i].b.elems)
		if !parts[i].inPlace(elems) {
			out = nil
		}
	}
	if out == nil {
		out = make([]Element, 0, total)
	}
	// With no frontend claimed twice, every entry owns what it claims:
	// no claim needs looking up.
	contested := len(t.Claims.others) > 0
	for i := range parts {
		p := &parts[i]
		for _, s := range p.r.spans {
			objs := Objects{Elements: p.b.elems[s.elemStart:s.elemEnd], Chains: p.r.chains[s.chainStart:s.chainEnd], Claims: p.b.claims[s.claimStart:s.claimEnd]}
			if contested {
				objs = objs.owned(s.key, t.Claims.ownerOf)
			}
			for _, e := range objs.Elements {
				if e.Shared {
					// One lookup: the count is new when the map grew.
					n := len(t.Owners)
					t.Owners[e.SharedID()]++
					if len(t.Owners) == n {
						continue
					}
				}
				out = append(out, e)
			}
			for _, c := range objs.Chains {
				t.ChainUsers[c]++
			}
		}
	}
	return out
}

// endpointChains returns the per-endpoint-count chains used, in order.
func endpointChains(users map[string]int) []Chain {
	names := make([]string, 0, len(users))
	for c := range users {
		names = append(names, c)
	}
	sortChainNames(names)
	chains := make([]Chain, 0, len(names))
	for _, name := range names {
		c, _ := EndpointChain(name)
		chains = append(chains, c)
	}
	return chains
}

// estimateEntry bounds from above how many elements an entry renders to,
// so View allocates its element slice once (see estimateElements).
func estimateEntry(e *doormanv1.Entry) int {
	if n := e.GetNode(); n != nil {
		// An address each; a start and an end element per CIDR.
		return len(n.GetNodeportAddresses()) + 2*(len(n.GetPodCidrs())+len(n.GetServiceCidrs()))
	}
	return estimateElements(e.GetServicePort())
}

// estimateElements bounds from above how many elements a ServicePort
// renders to, so View allocates its element slice once. It follows the
// rendering (see builder.servicePort) and is exact for a ClusterIP-only
// Service: at 100,000 Services every element of room is 112 bytes to
// allocate, and a page fault when touched.
func estimateElements(sp *doormanv1.ServicePort) int {
	if sp == nil {
		return 0
	}
	// Each endpoint of a frontend: its element and, with affinity, two
	// members.
	perEndpoint := 1
	if sp.GetAffinityTimeoutSeconds() > 0 {
		perEndpoint = 3
	}
	eps := len(sp.GetEndpoints())
	cluster, hairpin := eps, eps // the external frontends' endpoints; hairpin pairs
	if sp.GetInternalPolicyLocal() {
		cluster = len(sp.GetClusterEndpoints())
		hairpin += cluster
	}
	// An external frontend: its dispatch (or refusal) and cluster-wide
	// endpoints; under policy Local also its local dispatch, the local
	// verdict and the local endpoints.
	external := 1 + cluster*perEndpoint
	if sp.GetExternalPolicyLocal() {
		local := len(sp.GetLocalEndpoints())
		external += 2 + local*perEndpoint
		hairpin += local
	}
	frontends := len(sp.GetExternalIps()) + len(sp.GetLoadBalancerIps())
	if sp.GetNodePort() != 0 {
		frontends++
	}
	// The ClusterIP: its address, its dispatch (or refusal), its endpoints;
	// a LoadBalancer IP's firewall: its address and a range per source
	// range.
	return 2 + eps*perEndpoint + hairpin + frontends*external +
		len(sp.GetLoadBalancerIps())*(1+len(sp.GetLoadBalancerSourceRanges()))
}

// SortElements orders elements by set (in Sets order), then key bytes.
func SortElements(es []Element) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Set != es[j].Set {
			return setIndex[es[i].Set] < setIndex[es[j].Set]
		}
		if c := bytes.Compare(es[i].Key, es[j].Key); c != 0 {
			return c < 0
		}
		// The end of one range before the start of the next at the same
		// address.
		return es[i].IntervalEnd && !es[j].IntervalEnd
	})
}

// String prints the table as nft syntax, as `nft list table inet doorman`
// would (one element per line), for golden tests and debugging: a file
// `nft -f` reads. Two things differ from nft's listing: sets holding an
// endpoint index are declared by typeof (see Set.DeclText), and a rule nft
// cannot read back (Rule.Untyped) is shown as an nft comment.
func (t *Table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", TableFamily, TableName)
	sorted := append([]Element(nil), t.Elements...)
	SortElements(sorted)
	bySet := map[string][]Element{}
	for _, e := range sorted {
		bySet[e.Set] = append(bySet[e.Set], e)
	}
	for _, s := range t.Sets {
		kind := "set"
		if s.IsMap() {
			kind = "map"
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\t%s\n", kind, s.Name, s.DeclText())
		if f := s.FlagsText(); f != "" {
			fmt.Fprintf(&b, "\t\tflags %s\n", f)
		}
		if es := bySet[s.Name]; len(es) > 0 {
			if s.Interval && len(s.Key) == 1 {
				es = mergeIntervals(es)
			}
			b.WriteString("\t\telements = {\n")
			for i, e := range es {
				sep := ","
				if i == len(es)-1 {
					sep = ""
				}
				fmt.Fprintf(&b, "\t\t\t%s%s\n", FormatElement(e), sep)
			}
			b.WriteString("\t\t}\n")
		}
		b.WriteString("\t}\n\n")
	}
	for i, c := range t.Chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hook != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", c.Hook.Type, c.Hook.Hook, priorityText(c.Hook))
		}
		for _, r := range c.Rules {
			if r.Untyped {
				fmt.Fprintf(&b, "\t\t# nft cannot read: %s\n", r.Text)
				continue
			}
			fmt.Fprintf(&b, "\t\t%s\n", r.Text)
		}
		b.WriteString("\t}\n")
		if i < len(t.Chains)-1 {
			b.WriteString("\n")
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// priorityText prints a chain's priority as nft does: by the name of a
// standard priority the hook may use ("dstnat" in prerouting only, "srcnat"
// in postrouting only), give or take at most 10, else as a number.
func priorityText(h *Hook) string {
	names := []struct {
		name string
		prio int
	}{{"raw", -300}, {"mangle", -150}, {"filter", 0}, {"security", 50}}
	switch h.Hook {
	case "prerouting":
		names = append(names, struct {
			name string
			prio int
		}{"dstnat", priorityDstNAT})
	case "postrouting":
		names = append(names, struct {
			name string
			prio int
		}{"srcnat", prioritySrcNAT})
	}
	for _, n := range names {
		switch d := h.Priority - n.prio; {
		case d == 0:
			return n.name
		case d > 0 && d <= 10:
			return n.name + " + " + strconv.Itoa(d)
		case d < 0 && d >= -10:
			return n.name + " - " + strconv.Itoa(-d)
		}
	}
	return strconv.Itoa(h.Priority)
}

// FormatElement prints an element as nft does: "10.96.0.10 . tcp . 80 :
// goto service-2".
func FormatElement(e Element) string {
	s := FormatKey(e)
	switch {
	case e.Verdict != nil:
		s += " : " + FormatVerdict(e.Verdict)
	case e.Value != nil:
		set, _ := SetByName(e.Set)
		s += " : " + formatFields(set.Data, e.Value)
	}
	return s
}

// FormatKey prints an element's key; a range of a concatenated interval
// set prints its last field as a prefix or "first-last", a single-field
// interval element its address (with "end " for an end element).
func FormatKey(e Element) string {
	set, ok := SetByName(e.Set)
	if !ok {
		return fmt.Sprintf("%x", e.Key)
	}
	if e.KeyEnd != nil {
		return formatRangeFields(set.Key, e.Key, e.KeyEnd)
	}
	if e.IntervalEnd {
		return "end " + formatFields(set.Key, e.Key)
	}
	return formatFields(set.Key, e.Key)
}

// formatRangeFields prints a concatenated range: equal fields once, a
// differing field as a prefix when it is one, else "first-last".
func formatRangeFields(ts []Type, start, end []byte) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		n := (t.Len() + 3) &^ 3
		if len(start) < n || len(end) < n {
			return fmt.Sprintf("%x-%x", start, end)
		}
		a, z := start[:t.Len()], end[:t.Len()]
		switch {
		case bytes.Equal(a, z):
			parts = append(parts, formatField(t, a))
		default:
			parts = append(parts, formatAddrRange(t, a, z))
		}
		start, end = start[n:], end[n:]
	}
	return strings.Join(parts, " . ")
}

func formatAddrRange(t Type, a, z []byte) string {
	first, ok1 := netip.AddrFromSlice(a)
	last, ok2 := netip.AddrFromSlice(z)
	if (t == TypeIPv4 || t == TypeIPv6) && ok1 && ok2 {
		for bits := 0; bits <= first.BitLen(); bits++ {
			p := netip.PrefixFrom(first, bits)
			if p.Masked().Addr() == first && lastAddr(p) == last {
				return p.String()
			}
		}
	}
	return formatField(t, a) + "-" + formatField(t, z)
}

// mergeIntervals turns sorted start and end elements of a single-field
// interval set into one printable element each, as nft shows them
// ("10.244.1.0/24").
func mergeIntervals(es []Element) []Element {
	out := make([]Element, 0, len(es))
	for i := 0; i < len(es); i++ {
		e := es[i]
		if e.IntervalEnd {
			out = append(out, e) // an end without a start: print as is
			continue
		}
		set, _ := SetByName(e.Set)
		last := make([]byte, len(e.Key))
		for j := range last {
			last[j] = 0xff
		}
		if i+1 < len(es) && es[i+1].IntervalEnd {
			if next, ok := netip.AddrFromSlice(es[i+1].Key); ok {
				last = next.Prev().AsSlice()
			}
			i++
		}
		out = append(out, Element{Set: e.Set, Key: e.Key, KeyEnd: last})
		_ = set
	}
	return out
}

// FormatVerdict prints a verdict: "goto service-2", "drop".
func FormatVerdict(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictContinue:
		return "continue"
	}
	return fmt.Sprintf("verdict(%d)", v.Kind)
}

// formatFields splits b into the fields of ts (each padded to 4 bytes when
// there are several) and prints them joined by " . ".
func formatFields(ts []Type, b []byte) string {
	if len(ts) == 1 {
		return formatField(ts[0], b)
	}
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		n := (t.Len() + 3) &^ 3
		if len(b) < n {
			return fmt.Sprintf("%x", b)
		}
		parts = append(parts, formatField(t, b[:t.Len()]))
		b = b[n:]
	}
	return strings.Join(parts, " . ")
}

func formatField(t Type, b []byte) string {
	if len(b) < t.Len() {
		return fmt.Sprintf("%x", b)
	}
	switch t {
	case TypeIPv4, TypeIPv6:
		a, _ := netip.AddrFromSlice(b[:t.Len()])
		return a.String()
	case TypeProto:
		switch b[0] {
		case unix.IPPROTO_TCP:
			return "tcp"
		case unix.IPPROTO_UDP:
			return "udp"
		case unix.IPPROTO_SCTP:
			return "sctp"
		}
		return strconv.Itoa(int(b[0]))
	case TypePort:
		return strconv.Itoa(int(binary.BigEndian.Uint16(b)))
	case TypeIndex:
		return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(b))
	}
	return fmt.Sprintf("%x", b)
}
