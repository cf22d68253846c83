package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

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
	// Owners counts, for each shared element ID, the entries owning it.
	Owners map[string]int
	// Invalid lists the entries left out, with the reason: malformed, or
	// claiming an element another entry (first in key order) already owns.
	Invalid map[string]error
}

// View renders a whole view (the Node entry plus every ServicePort entry).
// An entry that cannot be rendered is left out and reported in Invalid; the
// others are rendered regardless.
func View(view map[string]*doormanv1.Entry) *Table {
	keys := make([]string, 0, len(view))
	for k := range view {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	t := &Table{Sets: Sets(), Owners: map[string]int{}, Invalid: map[string]error{}}
	owner := make(map[string]string) // frontend → entry key
	chains := map[string]bool{}
	for _, key := range keys {
		objs, err := Entry(view[key])
		if err != nil {
			t.Invalid[key] = err
			continue
		}
		if conflict := firstConflict(objs, owner); conflict != "" {
			t.Invalid[key] = fmt.Errorf("entry %q: %s", key, conflict)
			continue
		}
		for _, e := range objs.Elements {
			id := e.ID()
			if e.Shared {
				if t.Owners[id] == 0 {
					t.Elements = append(t.Elements, e)
				}
				t.Owners[id]++
				continue
			}
			if f, ok := frontend(e); ok {
				owner[f] = key
			}
			t.Elements = append(t.Elements, e)
		}
		for _, c := range objs.Chains {
			chains[c] = true
		}
	}
	t.Chains = StaticChains()
	names := make([]string, 0, len(chains))
	for c := range chains {
		names = append(names, c)
	}
	sortChainNames(names)
	for _, name := range names {
		c, _ := EndpointChain(name)
		t.Chains = append(t.Chains, c)
	}
	return t
}

// frontendGroup names, for each dispatch map, the address space its keys
// live in: an entry with endpoints and one without must not claim the same
// address . protocol . port either.
var frontendGroup = map[string]string{
	MapServiceIPs: "ip", MapNoEndpointServices: "ip",
	MapServiceIPs6: "ip6", MapNoEndpointServices6: "ip6",
	MapServiceNodePorts: "nodeport", MapNoEndpointNodePorts: "nodeport",
	MapServiceNodePorts6: "nodeport6", MapNoEndpointNodePorts6: "nodeport6",
}

// frontend identifies what a dispatch element answers for. Only dispatch
// elements need checking for conflicts: every other exclusive element's key
// starts with its entry's frontend.
func frontend(e Element) (string, bool) {
	g, ok := frontendGroup[e.Set]
	if !ok {
		return "", false
	}
	return g + "\x00" + string(e.Key), true
}

func firstConflict(objs Objects, owner map[string]string) string {
	for _, e := range objs.Elements {
		f, ok := frontend(e)
		if !ok {
			continue
		}
		if other, ok := owner[f]; ok {
			return fmt.Sprintf("%s element %s already owned by entry %q", e.Set, FormatKey(e), other)
		}
	}
	return ""
}

var setOrder = func() map[string]int {
	m := map[string]int{}
	for i, s := range Sets() {
		m[s.Name] = i
	}
	return m
}()

// SortElements orders elements by set (in Sets order), then key bytes.
func SortElements(es []Element) {
	sort.Slice(es, func(i, j int) bool {
		if es[i].Set != es[j].Set {
			return setOrder[es[i].Set] < setOrder[es[j].Set]
		}
		return bytes.Compare(es[i].Key, es[j].Key) < 0
	})
}

// String prints the table as nft syntax, as `nft list table inet doorman`
// would (one element per line), for golden tests and debugging.
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
		fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s\n", kind, s.Name, s.TypeText())
		if es := bySet[s.Name]; len(es) > 0 {
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

func priorityText(h *Hook) string {
	base, name := 0, "filter"
	switch {
	case h.Type == "nat" && h.Hook == "postrouting":
		base, name = prioritySrcNAT, "srcnat"
	case h.Type == "nat" || (h.Priority > -150 && h.Priority < -50):
		base, name = priorityDstNAT, "dstnat"
	}
	switch d := h.Priority - base; {
	case d == 0:
		return name
	case d > 0:
		return name + " + " + strconv.Itoa(d)
	default:
		return name + " - " + strconv.Itoa(-d)
	}
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

// FormatKey prints an element's key.
func FormatKey(e Element) string {
	set, ok := SetByName(e.Set)
	if !ok {
		return fmt.Sprintf("%x", e.Key)
	}
	return formatFields(set.Key, e.Key)
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
