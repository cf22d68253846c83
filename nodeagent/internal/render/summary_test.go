package render

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// testHash hashes every field of an element.
func testHash(e *Element) uint64 {
	h := fnv.New64a()
	for _, f := range [][]byte{[]byte(e.Set), e.Key, e.KeyEnd, e.Value} {
		_ = binary.Write(h, binary.BigEndian, uint32(len(f)))
		_, _ = h.Write(f)
	}
	_ = binary.Write(h, binary.BigEndian, e.IntervalEnd)
	if e.Verdict != nil {
		_ = binary.Write(h, binary.BigEndian, uint32(e.Verdict.Kind))
		_, _ = h.Write([]byte(e.Verdict.Chain))
	}
	return h.Sum64()
}

// TestSummary: a Summary, in any number of parts, is the View without its
// elements, and its digest is that of the View's elements: the Node entry,
// every kind of Service, shared elements (one ClusterIP on two ports, an
// endpoint behind several Services) far apart in key order, and an entry
// that cannot be rendered. A view with a frontend claimed twice gets no
// Summary.
func TestSummary(t *testing.T) {
	uncontested := partsView()
	for _, key := range []string{"aaa/evil:53/udp/ipv4", "zzy/clash:80/tcp/ipv4"} {
		if _, ok := uncontested[key]; !ok {
			t.Fatalf("partsView has no %s", key)
		}
		delete(uncontested, key)
	}
	views := map[string]map[string]*doormanv1.Entry{
		"small": smallView(), "kinds": kindsView(), "ranges": rangesView(), "shared across parts": uncontested, "2,000 Services": benchView(2000),
	}
	for name, view := range views {
		want := View(view)
		if len(want.Refused) != 0 {
			t.Fatalf("%s: View refused %v", name, want.Refused)
		}
		var wantDigest uint64
		for i := range want.Elements {
			wantDigest += testHash(&want.Elements[i])
		}
		keys, _ := sortedEntries(view)
		for _, n := range []int{1, 2, 3, 8} {
			t.Run(fmt.Sprintf("%s, %d parts", name, n), func(t *testing.T) {
				got, digest, ok := Options{}.summarize(keys, testHash, n)
				if !ok {
					t.Fatal("no Summary of a view without contested frontends")
				}
				if digest != wantDigest {
					t.Errorf("digest %x, want %x (the View's elements)", digest, wantDigest)
				}
				if got.Elements != nil {
					t.Errorf("Summary holds %d elements", len(got.Elements))
				}
				compareState(t, "-View +Summary", want, got)
			})
		}
	}
	if _, _, ok := (Options{}).Summary(partsView(), testHash); ok {
		t.Error("Summary of a view with contested frontends")
	}
}
