package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// claimer is a Service of namespace ns created at epoch + age seconds,
// with ports 80/TCP and 53/UDP.
func claimer(ns, name string, age int, uid, clusterIP string, opts ...svcOpt) *corev1.Service {
	s := svc(func(s *corev1.Service) {
		s.Namespace, s.Name = ns, name
		s.CreationTimestamp = metav1.NewTime(epoch.Add(time.Duration(age) * time.Second))
		s.UID = types.UID(uid)
		s.Spec.ClusterIP, s.Spec.ClusterIPs = clusterIP, []string{clusterIP}
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		}
	})
	for _, o := range opts {
		o(s)
	}
	return s
}

func externalIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}

func lbIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort, s.Spec.Ports[1].NodePort = 30080, 30053
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}

// addresses prints what each key of a Service's Result claims, in the
// form "key: cluster=... ext=... lb=...", sorted; "absent" when the
// Results hold none for it.
func addresses(rs []Result, id string) []string {
	i := slices.IndexFunc(rs, func(r Result) bool { return r.Service == id })
	if i < 0 {
		return []string{"absent"}
	}
	var out []string
	for key, v := range rs[i].Values {
		for _, sp := range append([]*doormanv1.ServicePort{v.Default}, nodeValues(v)...) {
			out = append(out, fmt.Sprintf("%s: cluster=%s ext=%s lb=%s", key, sp.GetClusterIp(),
				strings.Join(sp.GetExternalIps(), ","), strings.Join(sp.GetLoadBalancerIps(), ",")))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func nodeValues(v Value) []*doormanv1.ServicePort {
	var out []*doormanv1.ServicePort
	for _, sp := range v.ByNode {
		out = append(out, sp)
	}
	for _, sp := range v.ByZone {
		out = append(out, sp)
	}
	return out
}

func conflictsOf(rs []Result, id string) []string {
	var out []string
	for _, r := range rs {
		if r.Service == id {
			for _, c := range r.Conflicts {
				out = append(out, c.String())
			}
		}
	}
	return out
}

func setAll(m *Model, svcs ...*corev1.Service) []Result {
	var out []Result
	for _, s := range svcs {
		out = append(out, m.SetService(s)...)
	}
	return out
}

// TestClusterIPBeatsExternalIP: an externalIP (or LoadBalancer IP) naming
// another Service's ClusterIP never takes it, whatever the names and the
// ages; the claimant is sent without it and told who owns it.
func TestClusterIPBeatsExternalIP(t *testing.T) {
	for _, tc := range []struct {
		name           string
		thiefNS, thief string
		thiefAge       int
		opt            svcOpt
	}{
		{"externalIP, name sorts first, older", "aaa", "aaa", -100, externalIPs("10.96.0.10")},
		{"externalIP, name sorts last, younger", "zzz", "zzz", 100, externalIPs("10.96.0.10")},
		{"load balancer IP, name sorts first, older", "aaa", "aaa", -100, lbIPs("10.96.0.10")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range []string{"dns first", "thief first"} {
				m := New()
				dns := claimer("kube-system", "kube-dns", 0, "u-dns", "10.96.0.10")
				thief := claimer(tc.thiefNS, tc.thief, tc.thiefAge, "u-thief", "10.96.0.20", tc.opt)
				list := []*corev1.Service{dns, thief}
				if order == "thief first" {
					list = []*corev1.Service{thief, dns}
				}
				rs := setAll(m, list...)
				// The last Result of each Service is what the view holds.
				slices.Reverse(rs)
				if got, want := addresses(rs, "kube-system/kube-dns"), []string{
					"kube-system/kube-dns:dns/udp/ipv4: cluster=10.96.0.10 ext= lb=",
					"kube-system/kube-dns:http/tcp/ipv4: cluster=10.96.0.10 ext= lb=",
				}; !cmp.Equal(got, want) {
					t.Errorf("%s: kube-dns (-want +got):\n%s", order, cmp.Diff(want, got))
				}
				id := tc.thiefNS + "/" + tc.thief
				for _, a := range addresses(rs, id) {
					if strings.Contains(a, "10.96.0.10") || !strings.Contains(a, "cluster=10.96.0.20") {
						t.Errorf("%s: thief sent %q, want its own ClusterIP and not kube-dns's", order, a)
					}
				}
				claim := ClaimExternalIP
				if strings.HasPrefix(tc.name, "load") {
					claim = ClaimLoadBalancerIP
				}
				want := []string{
					claim.String() + " 10.96.0.10:80/tcp is the ClusterIP of kube-system/kube-dns",
					claim.String() + " 10.96.0.10:53/udp is the ClusterIP of kube-system/kube-dns",
				}
				if got := m.Conflicts(id); !cmp.Equal(stringsOf(got), want) {
					t.Errorf("%s: conflicts (-want +got):\n%s", order, cmp.Diff(want, stringsOf(got)))
				}
			}
		})
	}
}

func stringsOf(cs []Conflict) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}

// TestOlderServiceKeepsAddress: between two externalIP or LoadBalancer IP
// claims the older Service keeps the address, whatever the names and the
// order of arrival; on equal creationTimestamps, the smaller UID.
func TestOlderServiceKeepsAddress(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		old, young           *corev1.Service
		wantOwner, wantLoser string
	}{
		{"older sorts last by name",
			claimer("zzz", "old", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1")),
			claimer("aaa", "new", 10, "u2", "10.96.0.2", externalIPs("192.0.2.1")),
			"zzz/old", "aaa/new"},
		{"older sorts first by name",
			claimer("aaa", "old", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1")),
			claimer("zzz", "new", 10, "u2", "10.96.0.2", externalIPs("192.0.2.1")),
			"aaa/old", "zzz/new"},
		{"same creationTimestamp: smaller UID",
			claimer("zzz", "b", 0, "0000-uid", "10.96.0.1", externalIPs("192.0.2.1")),
			claimer("aaa", "a", 0, "ffff-uid", "10.96.0.2", externalIPs("192.0.2.1")),
			"zzz/b", "aaa/a"},
		{"older LoadBalancer IP over younger externalIP",
			claimer("zzz", "lb", 0, "u1", "10.96.0.1", lbIPs("192.0.2.1")),
			claimer("aaa", "ext", 10, "u2", "10.96.0.2", externalIPs("192.0.2.1")),
			"zzz/lb", "aaa/ext"},
		{"older externalIP over younger LoadBalancer IP",
			claimer("zzz", "ext", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1")),
			claimer("aaa", "lb", 10, "u2", "10.96.0.2", lbIPs("192.0.2.1")),
			"zzz/ext", "aaa/lb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][]*corev1.Service{{tc.old, tc.young}, {tc.young, tc.old}} {
				m := New()
				rs := setAll(m, order...)
				slices.Reverse(rs)
				for _, a := range addresses(rs, tc.wantOwner) {
					if !strings.Contains(a, "192.0.2.1") {
						t.Errorf("owner %s sent %q, want 192.0.2.1 in it", tc.wantOwner, a)
					}
				}
				for _, a := range addresses(rs, tc.wantLoser) {
					if strings.Contains(a, "192.0.2.1") || !strings.Contains(a, "cluster=10.96.0.2") {
						t.Errorf("loser %s sent %q, want its ClusterIP without 192.0.2.1", tc.wantLoser, a)
					}
				}
				if got := m.Conflicts(tc.wantOwner); got != nil {
					t.Errorf("owner's conflicts %v, want none", got)
				}
				if got := m.Conflicts(tc.wantLoser); len(got) != 2 || got[0].Owner != tc.wantOwner || got[1].Owner != tc.wantOwner {
					t.Errorf("loser's conflicts %v, want two naming %s", got, tc.wantOwner)
				}
				if m.ConflictCount() != 2 {
					t.Errorf("ConflictCount %d, want 2", m.ConflictCount())
				}
			}
		})
	}
}

// TestNextClaimantInSameUpdate: when the owner is deleted, lets the
// address go or is refused, the Results of that one change give the
// address to the next claimant, by age.
func TestNextClaimantInSameUpdate(t *testing.T) {
	owner := claimer("ns", "owner", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1"))
	second := claimer("ns", "second", 10, "u2", "10.96.0.2", externalIPs("192.0.2.1", "192.0.2.9"))
	third := claimer("ns", "third", 20, "u3", "10.96.0.3", externalIPs("192.0.2.1"))
	for _, tc := range []struct {
		name   string
		change func(m *Model) []Result
	}{
		{"owner deleted", func(m *Model) []Result { return m.DeleteService("ns", "owner") }},
		{"owner changes its externalIP", func(m *Model) []Result {
			return m.SetService(claimer("ns", "owner", 0, "u1", "10.96.0.1", externalIPs("192.0.2.7")))
		}},
		{"owner turns invalid", func(m *Model) []Result {
			return m.SetService(claimer("ns", "owner", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1", "not-an-ip")))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New()
			setAll(m, third, owner, second)
			if m.ConflictCount() != 4 {
				t.Fatalf("ConflictCount %d before, want 4 (two ports each of second and third)", m.ConflictCount())
			}
			rs := tc.change(m)
			if rs[0].Service != "ns/owner" {
				t.Errorf("first Result for %s, want the changed Service's", rs[0].Service)
			}
			want := []string{
				"ns/second:dns/udp/ipv4: cluster=10.96.0.2 ext=192.0.2.1,192.0.2.9 lb=",
				"ns/second:http/tcp/ipv4: cluster=10.96.0.2 ext=192.0.2.1,192.0.2.9 lb=",
			}
			if diff := cmp.Diff(want, addresses(rs, "ns/second")); diff != "" {
				t.Errorf("second (-want +got):\n%s", diff)
			}
			if got := conflictsOf(rs, "ns/second"); got != nil {
				t.Errorf("second still reports %v", got)
			}
			// third still loses, now to second: its Result says so.
			want = []string{
				"ns/third:dns/udp/ipv4: cluster=10.96.0.3 ext= lb=",
				"ns/third:http/tcp/ipv4: cluster=10.96.0.3 ext= lb=",
			}
			if diff := cmp.Diff(want, addresses(rs, "ns/third")); diff != "" {
				t.Errorf("third (-want +got):\n%s", diff)
			}
			want = []string{
				"externalIP 192.0.2.1:80/tcp is the externalIP of ns/second",
				"externalIP 192.0.2.1:53/udp is the externalIP of ns/second",
			}
			if diff := cmp.Diff(want, conflictsOf(rs, "ns/third")); diff != "" {
				t.Errorf("third's conflicts (-want +got):\n%s", diff)
			}
			if m.ConflictCount() != 2 {
				t.Errorf("ConflictCount %d after, want 2", m.ConflictCount())
			}
		})
	}
}

// TestLoserKeepsTheRest: a Service that loses one address keeps its
// ClusterIP, its other externalIPs and LoadBalancer IPs, its nodePorts and
// its endpoints on every port and node; only the lost address is left out.
func TestLoserKeepsTheRest(t *testing.T) {
	m := New()
	m.SetService(claimer("ns", "owner", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1")))
	loser := claimer("ns", "loser", 10, "u2", "10.96.0.2", lbIPs("192.0.2.1", "192.0.2.2"), externalIPs("192.0.2.1", "192.0.2.3"),
		func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal })
	m.SetService(loser)
	sl := slice("loser-1", "IPv4", map[string]int32{"http": 8080}, ep{ip: "10.1.0.1", node: "n1"}, ep{ip: "10.1.0.2", node: "n2"})
	sl.Labels[LabelServiceName] = "loser"
	rs := m.SetSlice(sl)
	if len(rs) != 1 {
		t.Fatalf("%d Results for a slice change, want 1", len(rs))
	}
	full, err := portsOf(loser, []*discoveryv1.EndpointSlice{sl})
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range rs[0].Values {
		want := full[key]
		pairs := [][2]*doormanv1.ServicePort{{want.Default, v.Default}}
		for n, sp := range want.ByNode {
			pairs = append(pairs, [2]*doormanv1.ServicePort{sp, v.ByNode[n]})
		}
		for _, pair := range pairs {
			w := cloneWithout(pair[0], "192.0.2.1")
			if diff := cmp.Diff(w, pair[1], protocmp.Transform()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", key, diff)
			}
		}
		if len(v.ByNode) != len(want.ByNode) {
			t.Errorf("%s: %d node overrides, want %d", key, len(v.ByNode), len(want.ByNode))
		}
	}
	if len(full["ns/loser:http/tcp/ipv4"].ByNode) != 2 {
		t.Errorf("the http port has %d node overrides, want 2", len(full["ns/loser:http/tcp/ipv4"].ByNode))
	}
}

// TestConflictReportedOnce: a conflict is new once; a resync of either
// Service or a slice change repeats the complete list without news.
func TestConflictReportedOnce(t *testing.T) {
	m := New()
	owner := claimer("ns", "owner", 0, "u1", "10.96.0.1", externalIPs("192.0.2.1"))
	loser := claimer("ns", "loser", 10, "u2", "10.96.0.2", externalIPs("192.0.2.1"))
	m.SetService(owner)
	rs := m.SetService(loser)
	if len(rs) != 1 || len(rs[0].NewConflicts) != 2 || len(rs[0].Conflicts) != 2 {
		t.Fatalf("loser arrives: %+v; want one Result with two new conflicts", rs)
	}
	for _, again := range [][]Result{m.SetService(loser), m.SetService(owner), m.SetService(loser)} {
		for _, r := range again {
			if len(r.NewConflicts) != 0 {
				t.Errorf("resync of %s reports %v again", r.Service, r.NewConflicts)
			}
		}
	}
	// The owner moves away and comes back: the conflict is new again.
	m.SetService(claimer("ns", "owner", 0, "u1", "10.96.0.1"))
	rs = m.SetService(owner)
	if len(rs) != 2 || rs[1].Service != "ns/loser" || len(rs[1].NewConflicts) != 2 {
		t.Errorf("owner back: %+v; want the loser's two conflicts new again", rs)
	}
}

// TestInvalidReportedOnce: a Service refused as a whole is newly invalid
// once per reason; its error is an *InvalidServiceError naming it.
func TestInvalidReportedOnce(t *testing.T) {
	m := New()
	bad := claimer("ns", "bad", 0, "u1", "10.96.0.1", externalIPs("nope"))
	for i, want := range []bool{true, false} {
		r := m.SetService(bad)[0]
		var inv *InvalidServiceError
		if !errors.As(r.Err, &inv) || inv.Service != "ns/bad" || r.NewlyInvalid != want {
			t.Errorf("set %d: err %v, newly invalid %v; want an InvalidServiceError for ns/bad, %v", i, r.Err, r.NewlyInvalid, want)
		}
	}
	dup := claimer("ns", "bad", 0, "u1", "10.96.0.1", func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "again", Protocol: corev1.ProtocolTCP, Port: 80})
	})
	r := m.SetService(dup)[0]
	if !r.NewlyInvalid || r.Values != nil || !strings.Contains(fmt.Sprint(r.Err), `port "again": port 80/TCP listed twice`) {
		t.Errorf("two ports 80/TCP: %+v; want refused, newly, for the other reason", r)
	}
	if r := m.SetService(claimer("ns", "bad", 0, "u1", "10.96.0.1"))[0]; r.NewlyInvalid || r.Err != nil {
		t.Errorf("fixed: %+v", r)
	}
	if r := m.SetService(bad)[0]; !r.NewlyInvalid {
		t.Error("refused again after a fix: not reported")
	}
}

// TestFrontendString: how a conflict names the address.
func TestFrontendString(t *testing.T) {
	f := Frontend{Addr: netip.MustParseAddr("fd00::1"), Protocol: sctp, Port: 9}
	if got := f.String(); got != "[fd00::1]:9/sctp" {
		t.Errorf("String() = %q", got)
	}
}

// cloneWithout is sp without one external address.
func cloneWithout(sp *doormanv1.ServicePort, addr string) *doormanv1.ServicePort {
	out := proto.CloneOf(sp)
	out.ExternalIps = slices.DeleteFunc(out.ExternalIps, func(s string) bool { return s == addr })
	out.LoadBalancerIps = slices.DeleteFunc(out.LoadBalancerIps, func(s string) bool { return s == addr })
	return out
}

// BenchmarkContestedChange: one Service moves its externalIP between an
// address another Service owns and a free one, among n Services of which
// every two share an externalIP. The index makes a change cost what the
// changed Service claims, so ns/op is the same at 10 and 10,000 Services.
func BenchmarkContestedChange(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			m := New()
			ip := func(i int) string { return netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)}).String() }
			ext := func(i int) string { return netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}).String() }
			for i := range n {
				m.SetService(claimer("ns", fmt.Sprintf("s%d", i), i, fmt.Sprintf("u%d", i), ip(i), externalIPs(ext(i/2))))
			}
			contested := claimer("ns", "s1", 1, "u1", ip(1), externalIPs(ext(0)))
			free := claimer("ns", "s1", 1, "u1", ip(1), externalIPs("198.51.100.1"))
			b.ResetTimer()
			for i := range b.N {
				s := contested
				if i%2 == 0 {
					s = free
				}
				if rs := m.SetService(s); len(rs) != 1 {
					b.Fatalf("%d Results", len(rs))
				}
			}
		})
	}
}
