package model

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func serviceCIDR(name string, cidrs ...string) *networkingv1.ServiceCIDR {
	return &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

// TestServiceCIDRs: the union of every object's CIDRs, canonical, sorted
// and without duplicates, follows objects coming, changing and going; a
// CIDR that does not parse is skipped with an error naming the object and
// the CIDR, and the object's other CIDRs still count.
func TestServiceCIDRs(t *testing.T) {
	type step struct {
		name        string
		set         *networkingv1.ServiceCIDR
		del         string
		wantChanged bool
		wantErr     []string // substrings of the error; none: no error
		want        []string
	}
	s := NewServiceCIDRs()
	for _, st := range []step{
		{name: "the default object, dual-stack", set: serviceCIDR("kubernetes", "fd00:10:96::/108", "10.96.0.0/12"),
			wantChanged: true, want: []string{"10.96.0.0/12", "fd00:10:96::/108"}},
		{name: "the same again", set: serviceCIDR("kubernetes", "10.96.0.0/12", "fd00:10:96::/108"),
			want: []string{"10.96.0.0/12", "fd00:10:96::/108"}},
		{name: "a second object", set: serviceCIDR("extra", "10.200.0.0/24"),
			wantChanged: true, want: []string{"10.96.0.0/12", "10.200.0.0/24", "fd00:10:96::/108"}},
		{name: "a third, overlapping, not canonical", set: serviceCIDR("overlap", " 10.200.0.7/24", "10.96.0.0/12", "10.96.0.0/16"),
			wantChanged: true, want: []string{"10.96.0.0/12", "10.96.0.0/16", "10.200.0.0/24", "fd00:10:96::/108"}},
		{name: "bad CIDRs skipped, the others count", set: serviceCIDR("broken", "10.0.0.0/33", "::ffff:10.1.0.0/112", "10.1.0.0", "10.201.0.0/24"),
			wantChanged: true,
			wantErr:     []string{"servicecidr broken", `"10.0.0.0/33"`, `"::ffff:10.1.0.0/112": IPv4-mapped`, `"10.1.0.0"`},
			want:        []string{"10.96.0.0/12", "10.96.0.0/16", "10.200.0.0/24", "10.201.0.0/24", "fd00:10:96::/108"}},
		{name: "an object's CIDRs replaced", set: serviceCIDR("broken"),
			wantChanged: true, want: []string{"10.96.0.0/12", "10.96.0.0/16", "10.200.0.0/24", "fd00:10:96::/108"}},
		{name: "delete one whose ranges another still has", del: "overlap",
			wantChanged: true, want: []string{"10.96.0.0/12", "10.200.0.0/24", "fd00:10:96::/108"}},
		{name: "delete the second", del: "extra",
			wantChanged: true, want: []string{"10.96.0.0/12", "fd00:10:96::/108"}},
		{name: "delete an unknown one", del: "nothing", want: []string{"10.96.0.0/12", "fd00:10:96::/108"}},
		{name: "delete the rest", del: "kubernetes", wantChanged: true},
	} {
		t.Run(st.name, func(t *testing.T) {
			var changed bool
			var err error
			if st.set != nil {
				changed, err = s.Set(st.set)
			} else {
				changed = s.Delete(st.del)
			}
			if changed != st.wantChanged {
				t.Errorf("changed = %t, want %t", changed, st.wantChanged)
			}
			switch {
			case len(st.wantErr) == 0 && err != nil:
				t.Errorf("error = %v, want none", err)
			case len(st.wantErr) > 0 && err == nil:
				t.Errorf("no error, want one containing %q", st.wantErr)
			}
			for _, w := range st.wantErr {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if diff := cmp.Diff(st.want, s.List()); diff != "" {
				t.Errorf("List (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeWithServiceCIDRs(t *testing.T) {
	base := &doormanv1.Node{Name: "n1", NodeportAddresses: []string{"172.18.0.3"}, PodCidrs: []string{"10.244.1.0/24"}}
	cidrs := []string{"10.96.0.0/12", "fd00:10:96::/108"}
	got := NodeWithServiceCIDRs(base, cidrs)
	want := &doormanv1.Node{Name: "n1", NodeportAddresses: []string{"172.18.0.3"}, PodCidrs: []string{"10.244.1.0/24"}, ServiceCidrs: cidrs}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
	if len(base.GetServiceCidrs()) != 0 {
		t.Errorf("the base node was changed: %v", base.GetServiceCidrs())
	}
	cidrs[0] = "changed"
	if got.GetServiceCidrs()[0] != "10.96.0.0/12" {
		t.Errorf("the node shares the caller's slice")
	}
	if NodeWithServiceCIDRs(nil, cidrs) != nil {
		t.Errorf("a nil node gained a value")
	}
}

// FuzzServiceCIDRs feeds ServiceCIDR objects as the API server could hand
// them over (any JSON that decodes). It must never panic; an error must
// name the object; every CIDR in the union must be one an agent accepts:
// it parses, is not IPv4-mapped, and is canonical, once, IPv4 first.
func FuzzServiceCIDRs(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"kubernetes"},"spec":{"cidrs":["10.96.0.0/12","fd00:10:96::/108"]}}`,
		`{"metadata":{"name":"odd"},"spec":{"cidrs":["10.96.0.7/12"," fd00::/0","::ffff:10.0.0.0/104","10.0.0.0/33","x","fe80::%eth0/64",""]}}`,
		`{}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, objJSON string) {
		var obj networkingv1.ServiceCIDR
		if json.Unmarshal([]byte(objJSON), &obj) != nil {
			return
		}
		s := NewServiceCIDRs()
		_, _ = s.Set(serviceCIDR("kubernetes", "10.96.0.0/12"))
		if _, err := s.Set(&obj); err != nil && !strings.Contains(err.Error(), "servicecidr "+obj.Name) {
			t.Errorf("error does not name ServiceCIDR %q: %v", obj.Name, err)
		}
		list := s.List()
		for i, c := range list {
			p, err := netip.ParsePrefix(c)
			switch {
			case err != nil:
				t.Errorf("CIDR %q does not parse: %v", c, err)
			case p.Addr().Is4In6():
				t.Errorf("CIDR %q is IPv4-mapped", c)
			case p.Masked().String() != c:
				t.Errorf("CIDR %q is not canonical", c)
			}
			if i > 0 && list[i-1] == c {
				t.Errorf("CIDR %q twice", c)
			}
			if i > 0 && strings.Contains(list[i-1], ":") && !strings.Contains(c, ":") {
				t.Errorf("IPv4 CIDR %q after an IPv6 one in %v", c, list)
			}
		}
	})
}
