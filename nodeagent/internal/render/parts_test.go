package render

import (
	"fmt"
	"maps"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// partsView is every kind of entry, and entries that share elements or
// contest frontends with entries far from them in key order (so in other
// parts): a ClusterIP taken as an externalIP, a nodePort twice, one
// ClusterIP on two ports, one endpoint behind two Services; and an entry
// that cannot be rendered.
func partsView() map[string]*doormanv1.Entry {
	view := kindsView()
	for i := 0; i < 40; i++ {
		e := svc(fmt.Sprintf("ns%02d", i), "plain", fmt.Sprintf("10.96.100.%d", i), tcp, 80, fmt.Sprintf("10.244.9.%d", i%7))
		view[e.GetKey()] = e
	}
	for _, e := range []*doormanv1.Entry{
		svc("aaa", "evil", "10.96.9.9", udp, 53, "10.244.6.6", externalIPs("10.96.200.10")),
		svc("zzz", "dns", "10.96.200.10", udp, 53, "10.244.1.2"),
		svc("aab", "front", "10.96.5.1", tcp, 80, "10.244.1.9", nodePort(30080)),
		svc("zzy", "clash", "10.96.9.8", tcp, 80, "10.244.9.9", nodePort(30080)),
		svc("aac", "web", "10.96.0.77", tcp, 80, "10.244.1.5"),
		svc("zzx", "web", "10.96.0.77", tcp, 443, "10.244.1.5"),
		svc("mmm", "bad", "x", tcp, 80, "10.244.1.5"),
	} {
		view[e.GetKey()] = e
	}
	return view
}

// TestViewInParts: a view rendered in any number of parts is the table of
// the view rendered by one builder: elements, shared owners, chain users,
// invalid and refused entries, and the claims' owners. With
// estimates that fall short, parts' elements move out of their stretch and
// the table is still the same.
func TestViewInParts(t *testing.T) {
	view := partsView()
	keys, est := sortedEntries(view, estimateEntry)
	want := Options{}.renderParts(keys, est, 1)
	if len(want.Invalid) != 1 || len(want.Refused) != 2 {
		t.Fatalf("one part: Invalid %v, Refused %v; want 1 and 2", want.Invalid, want.Refused)
	}
	check := func(t *testing.T, got *Table) {
		t.Helper()
		if diff := cmp.Diff(want.String(), got.String()); diff != "" {
			t.Errorf("table (-one part +parts):\n%s", diff)
		}
		compareState(t, "-one part +parts", want, got)
	}
	for _, n := range []int{2, 3, 7, len(keys)} {
		t.Run(fmt.Sprintf("%d parts", n), func(t *testing.T) {
			got := Options{}.renderParts(keys, est, n)
			check(t, got)
			if cap(got.Elements) != est {
				t.Errorf("elements not kept in the slice the estimates sized: cap %d, want %d", cap(got.Elements), est)
			}
		})
		t.Run(fmt.Sprintf("%d parts, estimates short", n), func(t *testing.T) {
			short := append([]keyedEntry(nil), keys...)
			for i := range short {
				short[i].est = 1
			}
			elems := make([]Element, 0, len(short))
			parts := splitParts(short, elems, n)
			for i := range parts {
				parts[i].render()
			}
			moved := 0
			for i := range parts {
				if !parts[i].inPlace(elems) {
					moved++
				}
			}
			if moved == 0 {
				t.Fatal("no part's elements moved: the short estimates test nothing")
			}
			got := Options{}.renderParts(short, len(short), n)
			check(t, got)
			if unsafe.SliceData(got.Elements) == unsafe.SliceData(elems) {
				t.Error("kept elements share the short slice")
			}
		})
	}
}

// compareState reports how got's owners, chain users, chains, claims and
// invalid and refused entries differ from want's.
func compareState(t *testing.T, legend string, want, got *Table) {
	t.Helper()
	for _, c := range []struct {
		what      string
		want, got any
	}{
		{"owners", want.Owners, got.Owners},
		{"chain users", want.ChainUsers, got.ChainUsers},
		{"chains", chainNames(want.Chains), chainNames(got.Chains)},
		{"claims' owners", claimOwners(want.Claims), claimOwners(got.Claims)},
		{"invalid", errorTexts(want.Invalid), errorTexts(got.Invalid)},
		{"refused", errorTexts(want.Refused), errorTexts(got.Refused)},
	} {
		if diff := cmp.Diff(c.want, c.got, cmp.AllowUnexported(SharedID{})); diff != "" {
			t.Errorf("%s (%s):\n%s", c.what, legend, diff)
		}
	}
}

func chainNames(chains []Chain) []string {
	var names []string
	for _, c := range chains {
		names = append(names, c.Name)
	}
	return names
}

// claimOwners is each claimed frontend's owner and kind.
func claimOwners(c *Claims) map[string]string {
	out := map[string]string{}
	for id, cl := range maps.All(c.owner) {
		out[id.String()] = cl.key + " " + cl.kind.String()
	}
	return out
}

// TestSortKeyed: entries sorted in any number of runs, odd numbers
// included, come out in key order, each once.
func TestSortKeyed(t *testing.T) {
	for _, size := range []int{0, 1, 2, 5, 1000} {
		for runs := 1; runs <= 7; runs++ {
			keys := make([]keyedEntry, size)
			for i := range keys {
				keys[i] = keyedEntry{key: fmt.Sprintf("k%05d", (i*7919)%size)}
			}
			got := sortRuns(keys, runs)
			if len(got) != size {
				t.Fatalf("%d keys in %d runs: %d out", size, runs, len(got))
			}
			for i := range got {
				if want := fmt.Sprintf("k%05d", i); got[i].key != want {
					t.Fatalf("%d keys in %d runs: [%d] = %s, want %s", size, runs, i, got[i].key, want)
				}
			}
		}
	}
}
