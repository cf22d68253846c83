package render

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// svc is a ServicePort entry on 53/udp or 80/tcp with one endpoint, edited
// by opts.
func svc(ns, name, clusterIP string, protocol doormanv1.Protocol, port uint32, endpoint string, opts ...func(*doormanv1.ServicePort)) *doormanv1.Entry {
	family := ipv4
	if strings.Contains(clusterIP, ":") {
		family = ipv6
	}
	sp := &doormanv1.ServicePort{Namespace: ns, Name: name, Protocol: protocol, Family: family,
		ClusterIp: clusterIP, Port: port, Endpoints: []*doormanv1.Endpoint{ep(endpoint, 8080)}}
	for _, o := range opts {
		o(sp)
	}
	return spEntry(sp)
}

func externalIPs(ips ...string) func(*doormanv1.ServicePort) {
	return func(sp *doormanv1.ServicePort) { sp.ExternalIps = ips }
}

func lbIPs(ips ...string) func(*doormanv1.ServicePort) {
	return func(sp *doormanv1.ServicePort) { sp.LoadBalancerIps = ips }
}

func nodePort(p uint32) func(*doormanv1.ServicePort) {
	return func(sp *doormanv1.ServicePort) { sp.NodePort = p }
}

// edit returns a copy of e with opts applied.
func edit(e *doormanv1.Entry, opts ...func(*doormanv1.ServicePort)) *doormanv1.Entry {
	c := proto.Clone(e).(*doormanv1.Entry)
	for _, o := range opts {
		o(c.GetServicePort())
	}
	return c
}

// TestViewConflicts: two entries claim one frontend. A ClusterIP keeps it
// against an externalIP or LoadBalancer IP whatever the keys' order;
// between equals the first key keeps it. The loser is programmed without
// that frontend only (its own ClusterIP and the rest stay), and reported
// with both names. The table is exactly the one of a view where the loser
// never claimed the frontend.
func TestViewConflicts(t *testing.T) {
	const dnsIP, dnsIP6 = "10.96.0.10", "fd00:96::10"
	tests := []struct {
		name string
		// winner and loser claim one frontend; loserAlone is the loser
		// without that claim.
		winner, loser, loserAlone *doormanv1.Entry
		wantReason                string
	}{
		{
			name:       "externalIP sorting first against a ClusterIP",
			winner:     svc("kube-system", "kube-dns", dnsIP, udp, 53, "10.244.1.2"),
			loser:      svc("aaa", "evil", "10.96.9.9", udp, 53, "10.244.6.6", externalIPs(dnsIP)),
			loserAlone: svc("aaa", "evil", "10.96.9.9", udp, 53, "10.244.6.6"),
			wantReason: `entry "aaa/evil:53/udp/ipv4": externalIP 10.96.0.10:53/udp is the ClusterIP of "kube-system/kube-dns:53/udp/ipv4"`,
		},
		{
			name:       "externalIP sorting after a ClusterIP",
			winner:     svc("kube-system", "kube-dns", dnsIP, udp, 53, "10.244.1.2"),
			loser:      svc("zzz", "evil", "10.96.9.9", udp, 53, "10.244.6.6", externalIPs(dnsIP)),
			loserAlone: svc("zzz", "evil", "10.96.9.9", udp, 53, "10.244.6.6"),
			wantReason: `entry "zzz/evil:53/udp/ipv4": externalIP 10.96.0.10:53/udp is the ClusterIP of "kube-system/kube-dns:53/udp/ipv4"`,
		},
		{
			name:       "LoadBalancer IP sorting first against a ClusterIP",
			winner:     svc("zzz", "victim", "10.96.0.80", tcp, 80, "10.244.1.2"),
			loser:      svc("aaa", "evil", "10.96.9.9", tcp, 80, "10.244.6.6", lbIPs("10.96.0.80")),
			loserAlone: svc("aaa", "evil", "10.96.9.9", tcp, 80, "10.244.6.6"),
			wantReason: `entry "aaa/evil:80/tcp/ipv4": load balancer IP 10.96.0.80:80/tcp is the ClusterIP of "zzz/victim:80/tcp/ipv4"`,
		},
		{
			name:       "LoadBalancer IP sorting after a ClusterIP",
			winner:     svc("aaa", "victim", "10.96.0.80", tcp, 80, "10.244.1.2"),
			loser:      svc("zzz", "evil", "10.96.9.9", tcp, 80, "10.244.6.6", lbIPs("10.96.0.80")),
			loserAlone: svc("zzz", "evil", "10.96.9.9", tcp, 80, "10.244.6.6"),
			wantReason: `entry "zzz/evil:80/tcp/ipv4": load balancer IP 10.96.0.80:80/tcp is the ClusterIP of "aaa/victim:80/tcp/ipv4"`,
		},
		{
			name:       "IPv6 externalIP against a ClusterIP",
			winner:     svc("kube-system", "kube-dns", dnsIP6, udp, 53, "fd00:244:1::2"),
			loser:      svc("aaa", "evil", "fd00:96::99", udp, 53, "fd00:244:6::6", externalIPs(dnsIP6)),
			loserAlone: svc("aaa", "evil", "fd00:96::99", udp, 53, "fd00:244:6::6"),
			wantReason: `entry "aaa/evil:53/udp/ipv6": externalIP [fd00:96::10]:53/udp is the ClusterIP of "kube-system/kube-dns:53/udp/ipv6"`,
		},
		{
			name:       "externalIP against externalIP: the first key keeps it",
			winner:     svc("aaa", "old", "10.96.0.1", tcp, 80, "10.244.1.2", externalIPs("192.0.2.1")),
			loser:      svc("zzz", "new", "10.96.0.2", tcp, 80, "10.244.2.2", externalIPs("192.0.2.1", "192.0.2.2")),
			loserAlone: svc("zzz", "new", "10.96.0.2", tcp, 80, "10.244.2.2", externalIPs("192.0.2.2")),
			wantReason: `entry "zzz/new:80/tcp/ipv4": externalIP 192.0.2.1:80/tcp is the externalIP of "aaa/old:80/tcp/ipv4"`,
		},
		{
			name:       "LoadBalancer IP against externalIP: the first key keeps it",
			winner:     svc("aaa", "ext", "10.96.0.1", tcp, 80, "10.244.1.2", externalIPs("192.0.2.1")),
			loser:      svc("bbb", "lb", "10.96.0.2", tcp, 80, "10.244.2.2", lbIPs("192.0.2.1")),
			loserAlone: svc("bbb", "lb", "10.96.0.2", tcp, 80, "10.244.2.2"),
			wantReason: `entry "bbb/lb:80/tcp/ipv4": load balancer IP 192.0.2.1:80/tcp is the externalIP of "aaa/ext:80/tcp/ipv4"`,
		},
		{
			name:       "nodePort against nodePort: the first key keeps it",
			winner:     svc("shop", "front", "10.96.5.1", tcp, 80, "10.244.1.9", nodePort(30080)),
			loser:      svc("zzz", "clash", "10.96.9.9", tcp, 80, "10.244.9.9", nodePort(30080)),
			loserAlone: svc("zzz", "clash", "10.96.9.9", tcp, 80, "10.244.9.9"),
			wantReason: `entry "zzz/clash:80/tcp/ipv4": nodePort 30080/tcp is the nodePort of "shop/front:80/tcp/ipv4"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node := nodeEntry("192.168.1.10")
			got := View(viewOf(node, tc.winner, tc.loser))
			if len(got.Invalid) != 0 {
				t.Errorf("Invalid = %v, want none", got.Invalid)
			}
			reasons := map[string]string{}
			for k, err := range got.Refused {
				reasons[k] = err.Error()
			}
			if diff := cmp.Diff(map[string]string{tc.loser.GetKey(): tc.wantReason}, reasons); diff != "" {
				t.Errorf("Refused (-want +got):\n%s", diff)
			}
			want := View(viewOf(node, tc.winner, tc.loserAlone))
			if diff := cmp.Diff(want.String(), got.String()); diff != "" {
				t.Errorf("table differs from the one without the losing claim (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want.ChainUsers, got.ChainUsers); diff != "" {
				t.Errorf("chain users (-want +got):\n%s", diff)
			}
		})
	}
}

// kernel simulates what Plans do to the table: each entry's objects as
// the moves leave them.
type kernel struct {
	t     *testing.T
	held  map[string]Objects
	view  map[string]*doormanv1.Entry
	claim *Claims
}

func newKernel(t *testing.T, view map[string]*doormanv1.Entry) *kernel {
	k := &kernel{t: t, held: map[string]Objects{}, view: map[string]*doormanv1.Entry{}, claim: NewClaims()}
	var changes []Change
	for key, e := range view {
		changes = append(changes, Change{Key: key, New: e})
	}
	k.apply(changes...)
	return k
}

// apply plans the changes, checks every move starts from what the entry
// held, records the moves and checks the result against View of the whole
// view. It returns the keys that moved.
func (k *kernel) apply(changes ...Change) []string {
	k.t.Helper()
	p, err := k.claim.Plan(changes)
	if err != nil {
		k.t.Fatalf("Plan: %v", err)
	}
	var moved []string
	for _, m := range p.Moves {
		moved = append(moved, m.Key)
		if diff := cmp.Diff(elementTexts(k.held[m.Key].Elements), elementTexts(m.Old.Elements)); diff != "" {
			k.t.Fatalf("move of %q does not start from what it holds (-held +old):\n%s", m.Key, diff)
		}
		if len(m.New.Elements) == 0 {
			delete(k.held, m.Key)
		} else {
			k.held[m.Key] = m.New
		}
	}
	k.claim.Commit(p)
	for _, c := range changes {
		if c.New == nil {
			delete(k.view, c.Key)
		} else {
			k.view[c.Key] = c.New
		}
	}
	want := View(k.view)
	var got []Element
	seen := map[string]bool{}
	for _, o := range k.held {
		for _, e := range o.Elements {
			if id := e.ID(); !seen[id] {
				seen[id] = true
				got = append(got, e)
			}
		}
	}
	if diff := cmp.Diff(elementTexts(want.Elements), elementTexts(got)); diff != "" {
		k.t.Fatalf("after the moves the table differs from View (-view +moves):\n%s", diff)
	}
	if diff := cmp.Diff(errorTexts(want.Refused), errorTexts(k.claim.Refused())); diff != "" {
		k.t.Fatalf("refused entries differ from View's (-view +claims):\n%s", diff)
	}
	sort.Strings(moved)
	return moved
}

func elementTexts(es []Element) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Set + " " + FormatElement(e)
	}
	sort.Strings(out)
	return out
}

func errorTexts(m map[string]error) map[string]string {
	out := map[string]string{}
	for k, err := range m {
		out[k] = err.Error()
	}
	return out
}

// TestPlanHandsOverFrontends: an update moves only the entries it changes
// and those whose frontends change hands, in the same plan; after every
// update the table is the one View renders for the whole view.
func TestPlanHandsOverFrontends(t *testing.T) {
	victim := svc("zzz", "victim", "10.96.0.10", tcp, 80, "10.244.1.2")
	evil := svc("aaa", "evil", "10.96.9.9", tcp, 80, "10.244.6.6", externalIPs("10.96.0.10"))
	other := svc("default", "other", "10.96.0.20", tcp, 80, "10.244.3.3")
	first := svc("aaa", "first", "10.96.0.1", tcp, 80, "10.244.1.1", externalIPs("192.0.2.1"))
	second := svc("zzz", "second", "10.96.0.2", tcp, 80, "10.244.2.2", externalIPs("192.0.2.1"))
	victimMoved := edit(victim, func(sp *doormanv1.ServicePort) { sp.Endpoints[0].Ip = "10.244.1.3" })

	k := newKernel(t, viewOf(nodeEntry("192.168.1.10"), victim, other))
	steps := []struct {
		name      string
		changes   []Change
		wantMoved []string
		// wantRefused: the keys Refused lists afterwards.
		wantRefused []string
	}{
		{
			name:        "an externalIP on a ClusterIP is refused, the victim is untouched",
			changes:     []Change{{Key: evil.GetKey(), New: evil}},
			wantMoved:   []string{evil.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:        "the victim's endpoint changes: it keeps its ClusterIP",
			changes:     []Change{{Key: victim.GetKey(), Old: victim, New: victimMoved}},
			wantMoved:   []string{victim.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:      "the victim goes: the externalIP takes the address in the same plan",
			changes:   []Change{{Key: victim.GetKey(), Old: victimMoved}},
			wantMoved: []string{evil.GetKey(), victim.GetKey()},
		},
		{
			name:        "the ClusterIP comes back and takes the address from the externalIP",
			changes:     []Change{{Key: victim.GetKey(), New: victim}},
			wantMoved:   []string{evil.GetKey(), victim.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:        "two externalIPs: the later key arrives first and owns it",
			changes:     []Change{{Key: second.GetKey(), New: second}},
			wantMoved:   []string{second.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:        "the first key arrives and takes it",
			changes:     []Change{{Key: first.GetKey(), New: first}},
			wantMoved:   []string{first.GetKey(), second.GetKey()},
			wantRefused: []string{evil.GetKey(), second.GetKey()},
		},
		{
			name:        "the owner drops the address: the other is programmed in the same plan",
			changes:     []Change{{Key: first.GetKey(), Old: first, New: edit(first, externalIPs())}},
			wantMoved:   []string{first.GetKey(), second.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:        "the owner takes it back, the waiting one is changed in the same update",
			changes:     []Change{{Key: first.GetKey(), Old: edit(first, externalIPs()), New: first}, {Key: second.GetKey(), Old: second, New: edit(second, nodePort(30002))}},
			wantMoved:   []string{first.GetKey(), second.GetKey()},
			wantRefused: []string{evil.GetKey(), second.GetKey()},
		},
		{
			name:        "the owner is deleted: the other is programmed in the same plan",
			changes:     []Change{{Key: first.GetKey(), Old: first}},
			wantMoved:   []string{first.GetKey(), second.GetKey()},
			wantRefused: []string{evil.GetKey()},
		},
		{
			name:      "the attacker and the victim go together",
			changes:   []Change{{Key: evil.GetKey(), Old: evil}, {Key: victim.GetKey(), Old: victim}},
			wantMoved: []string{evil.GetKey(), victim.GetKey()},
		},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			k.t = t
			moved := k.apply(s.changes...)
			if diff := cmp.Diff(s.wantMoved, moved); diff != "" {
				t.Errorf("moved keys (-want +got):\n%s", diff)
			}
			refused := slices.Sorted(maps.Keys(k.claim.Refused()))
			if diff := cmp.Diff(s.wantRefused, refused, cmp.Comparer(func(a, b []string) bool { return len(a) == 0 && len(b) == 0 || slices.Equal(a, b) })); diff != "" {
				t.Errorf("refused keys (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanRejectsAKeyTwice(t *testing.T) {
	e := svc("a", "b", "10.96.0.1", tcp, 80, "10.244.1.1")
	if _, err := NewClaims().Plan([]Change{{Key: e.GetKey(), New: e}, {Key: e.GetKey(), New: e}}); err == nil || !strings.Contains(err.Error(), e.GetKey()) {
		t.Errorf("Plan with a key twice: error = %v, want one naming the key", err)
	}
}

func TestPlanRejectsAnOldValueNotHeld(t *testing.T) {
	held := svc("a", "held", "10.96.0.1", tcp, 80, "10.244.1.1")
	ghost := svc("a", "ghost", "10.96.0.2", tcp, 80, "10.244.1.2")
	c := NewClaims()
	p, err := c.Plan([]Change{{Key: held.GetKey(), New: held}})
	if err != nil {
		t.Fatal(err)
	}
	c.Commit(p)
	if _, err := c.Plan([]Change{{Key: ghost.GetKey(), Old: ghost}}); err == nil || !strings.Contains(err.Error(), ghost.GetKey()) {
		t.Errorf("Plan removing a value never added: error = %v, want one naming the key", err)
	}
	if _, err := c.Plan([]Change{{Key: held.GetKey(), Old: held}}); err != nil {
		t.Errorf("Plan removing the value held: %v", err)
	}
}
