package render

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMergeRanges(t *testing.T) {
	r := func(first, last string) addrRange {
		return addrRange{netip.MustParseAddr(first), netip.MustParseAddr(last)}
	}
	for _, tc := range []struct {
		name string
		in   []addrRange
		want []addrRange
	}{
		{"none", nil, nil},
		{"one", []addrRange{r("10.0.0.0", "10.255.255.255")}, []addrRange{r("10.0.0.0", "10.255.255.255")}},
		{"contained", []addrRange{r("10.250.0.0", "10.250.255.255"), r("10.0.0.0", "10.255.255.255")},
			[]addrRange{r("10.0.0.0", "10.255.255.255")}},
		{"duplicate", []addrRange{r("10.0.0.0", "10.0.0.255"), r("10.0.0.0", "10.0.0.255")},
			[]addrRange{r("10.0.0.0", "10.0.0.255")}},
		{"overlapping", []addrRange{r("10.0.0.0", "10.0.0.200"), r("10.0.0.100", "10.0.1.255")},
			[]addrRange{r("10.0.0.0", "10.0.1.255")}},
		{"touching", []addrRange{r("192.168.1.0", "192.168.1.255"), r("192.168.0.0", "192.168.0.255")},
			[]addrRange{r("192.168.0.0", "192.168.1.255")}},
		{"apart, sorted", []addrRange{r("192.168.2.0", "192.168.2.255"), r("192.168.0.0", "192.168.0.255")},
			[]addrRange{r("192.168.0.0", "192.168.0.255"), r("192.168.2.0", "192.168.2.255")}},
		{"up to the top", []addrRange{r("255.255.255.255", "255.255.255.255"), r("0.0.0.0", "255.255.255.255"), r("10.0.0.0", "10.0.0.1")},
			[]addrRange{r("0.0.0.0", "255.255.255.255")}},
		{"IPv6", []addrRange{r("2001:db8:1:2::", "2001:db8:1:2:ffff:ffff:ffff:ffff"), r("2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff"), r("2001:db8:3::", "2001:db8:3::1")},
			[]addrRange{r("2001:db8:1::", "2001:db8:1:ffff:ffff:ffff:ffff:ffff"), r("2001:db8:3::", "2001:db8:3::1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]addrRange(nil), tc.in...)
			got := mergeRanges(tc.in)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(addrRange{}), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("merged (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in, tc.in, cmp.AllowUnexported(addrRange{}), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("input changed (-before +after):\n%s", diff)
			}
		})
	}
}
