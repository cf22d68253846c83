package app

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// claimService is a TCP Service on port 80 with one endpoint and the
// given externalIPs.
func claimService(t *testing.T, ns, name, clusterIP, endpoint string, externalIPs ...string) *doormanv1.Entry {
	return withDigest(t, &doormanv1.ServicePort{Namespace: ns, Name: name, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: clusterIP, Port: 80, ExternalIps: externalIPs,
		Endpoints: []*doormanv1.Endpoint{{Ip: endpoint, Port: 8080}}})
}

// TestConflictingServices, the agent on a real kernel: a Service whose
// externalIP is another namespace's ClusterIP is acked as not programmed
// while the victim keeps its element; when the owner of an externalIP two
// Services list is deleted, the other is programmed by that update's one
// Apply and the Ack and Inspect stop listing it.
func TestConflictingServices(t *testing.T) {
	ns := testnet.NewNS(t, "conflict")
	dp, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	k := &callCounter{Kernel: dp}
	a := agent.New("node-1", state.New(), k, nil)

	node := nodeWithDigest(t, "192.168.50.1")
	victim := claimService(t, "zzz", "victim", "10.96.0.10", "10.244.1.1")
	evil := claimService(t, "aaa", "evil", "10.96.0.20", "10.244.6.6", "10.96.0.10")
	first := claimService(t, "aaa", "first", "10.96.0.31", "10.244.3.1", "192.0.2.10")
	second := claimService(t, "zzz", "second", "10.96.0.32", "10.244.3.2", "192.0.2.10")

	table := func() string { return nftIn(t, ns, "", "list", "table", "inet", "doorman") }
	handle := func(version uint64, view []*doormanv1.Entry, upserts []*doormanv1.Entry, removals []string, wantNotProgrammed ...string) {
		t.Helper()
		out := a.Handle(&doormanv1.SyncResponse{Version: version, Full: version == 1, Upserts: upserts, Removals: removals, ViewDigest: digestOf(view)})
		ack := out.Reply.GetAck()
		if ack == nil {
			t.Fatalf("version %d: %v, want an ack", version, out.Reply)
		}
		if got := ack.GetNotProgrammed(); !slices.Equal(got, wantNotProgrammed) {
			t.Fatalf("version %d: ack lists %v not programmed, want %v", version, got, wantNotProgrammed)
		}
		if c := a.Counters(); c.NotProgrammed != len(wantNotProgrammed) {
			t.Errorf("version %d: counters say %d not programmed, want %d", version, c.NotProgrammed, len(wantNotProgrammed))
		}
	}

	view := []*doormanv1.Entry{node, victim}
	handle(1, view, view, nil)
	victimElement := "10.96.0.10 . tcp . 80 : goto service-1"
	if !strings.Contains(table(), victimElement) {
		t.Fatalf("kernel lacks the victim's %q:\n%s", victimElement, table())
	}
	k.take()

	// The attacker: acked, not programmed, by one Apply; the victim's
	// element stays.
	view = append(view, evil)
	handle(2, view, []*doormanv1.Entry{evil}, nil, evil.GetKey())
	if calls := k.take(); !slices.Equal(calls, []string{"apply"}) {
		t.Errorf("kernel calls %v, want one apply", calls)
	}
	kernel := table()
	if !strings.Contains(kernel, victimElement) || !strings.Contains(kernel, "10.96.0.20 . tcp . 80") {
		t.Errorf("kernel: want the victim's element and the attacker's own ClusterIP:\n%s", kernel)
	}
	st := a.Status(false)
	want := `aaa/evil:80/tcp/ipv4: entry "aaa/evil:80/tcp/ipv4": externalIP 10.96.0.10:80/tcp is the ClusterIP of "zzz/victim:80/tcp/ipv4"`
	if !slices.Equal(st.GetNotProgrammed(), []string{want}) {
		t.Errorf("status not programmed: %q, want %q", st.GetNotProgrammed(), want)
	}

	// Two Services list one externalIP: the first key owns it.
	view = append(view, first, second)
	handle(3, view, []*doormanv1.Entry{second, first}, nil, evil.GetKey(), second.GetKey())
	if kernel := table(); !strings.Contains(kernel, "10.244.3.1") || strings.Contains(kernel, "192.0.2.10 . tcp . 80 . 0x00000000 : 10.244.3.2") {
		t.Errorf("kernel: want 192.0.2.10 to first's endpoint only:\n%s", kernel)
	}
	k.take()

	// The owner goes: the other is programmed by the same Apply.
	view = []*doormanv1.Entry{node, victim, evil, second}
	handle(4, view, nil, []string{first.GetKey()}, evil.GetKey())
	if calls := k.take(); !slices.Equal(calls, []string{"apply"}) {
		t.Errorf("kernel calls %v, want one apply", calls)
	}
	if kernel := table(); !strings.Contains(kernel, "192.0.2.10 . tcp . 80 . 0x00000000 : 10.244.3.2 . 8080") {
		t.Errorf("kernel: want 192.0.2.10 to second's endpoint:\n%s", kernel)
	}

	// The attacker goes: nothing is left out.
	view = []*doormanv1.Entry{node, victim, second}
	handle(5, view, nil, []string{evil.GetKey()})
	if st := a.Status(false); len(st.GetNotProgrammed()) != 0 {
		t.Errorf("status not programmed: %q, want none", st.GetNotProgrammed())
	}
	// A full Sync finds the kernel as the Applies left it.
	if r := a.Resync(agent.TriggerForeignChange); r.Err != nil || r.Ops != 0 || r.Warning != nil {
		t.Errorf("resync: ops %d, warning %v, err %v; want 0, nil, nil", r.Ops, r.Warning, r.Err)
	}
}
