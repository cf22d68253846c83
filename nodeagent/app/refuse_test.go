package app

import (
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// callCounter counts the kernel calls the agent makes.
type callCounter struct {
	agent.Kernel
	mu    sync.Mutex
	calls []string
}

func (c *callCounter) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	c.mu.Lock()
	c.calls = append(c.calls, "sync")
	c.mu.Unlock()
	return c.Kernel.Sync(view)
}

func (c *callCounter) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	c.mu.Lock()
	c.calls = append(c.calls, "apply")
	c.mu.Unlock()
	return c.Kernel.Apply(changes)
}

func (c *callCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// nftIn runs nft in the namespace, with stdin.
func nftIn(t *testing.T, ns *testnet.NS, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path(), "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func lbService(t *testing.T, name, lbIP string, ranges ...string) *doormanv1.Entry {
	return withDigest(t, &doormanv1.ServicePort{Namespace: "default", Name: name, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.1." + lbIP[len(lbIP)-1:], Port: 80,
		LoadBalancerIps: []string{lbIP}, LoadBalancerSourceRanges: ranges,
		Endpoints: []*doormanv1.Endpoint{{Ip: "10.244.1.2", Port: 8080}}})
}

// TestKernelRefusesOneService: a kernel that refuses one Service's
// elements (someone made the firewall-ips set full) holds back neither the
// rest of the update nor later ones: the agent, on a real kernel, isolates
// the refused key, keeps the others, acks with the key not programmed, does
// not retry it, and programs it once it changes.
func TestKernelRefusesOneService(t *testing.T) {
	ns, k, a := agentOnKernel(t, "refuse", "no nft binary to make a set full")

	node := nodeWithDigest(t, "192.168.50.1")
	web, web2 := webService(t, "10.244.1.2"), webService(t, "10.244.9.9")
	lb1 := lbService(t, "lb1", "198.51.100.1", "10.0.0.0/8")
	lb2 := lbService(t, "lb2", "198.51.100.2", "10.0.0.0/8") // refused: the set is full
	lb2Fixed := lbService(t, "lb2", "198.51.100.2")          // no source ranges: no firewall-ips element

	view := []*doormanv1.Entry{node, web, lb1}
	if out := a.Handle(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}); out.Reply.GetAck() == nil {
		t.Fatalf("first update: %v", out.Reply)
	}

	// Someone replaces firewall-ips with a set limited to the one element
	// it holds (dropping the rules that use it): the kernel refuses
	// (ENFILE) any Service that adds to it.
	text := nftIn(t, ns, "", "list", "set", "inet", "doorman", "firewall-ips")
	const head = "set firewall-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service\n"
	if !strings.Contains(text, head) {
		t.Fatalf("no firewall-ips set in\n%s", text)
	}
	text = strings.Replace(text, head, head+"\t\tsize 1\n", 1)
	nftIn(t, ns, "flush chain inet doorman firewall-check\ndelete set inet doorman firewall-ips\n"+text, "-f", "-")
	// The agent puts back the rules; the set keeps its size.
	if r := a.Resync(agent.TriggerForeignChange); r.Err != nil {
		t.Fatalf("resync: %v", r.Err)
	}
	if !strings.Contains(nftIn(t, ns, "", "list", "set", "inet", "doorman", "firewall-ips"), "size 1") {
		t.Fatal("firewall-ips lost its size")
	}
	k.take()

	// Only the refused Service: NACK, the kernel untouched.
	before := nftIn(t, ns, "", "list", "table", "inet", "doorman")
	view = []*doormanv1.Entry{node, web, lb1, lb2}
	out := a.Handle(&doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{lb2}, ViewDigest: digestOf(view)})
	if out.Reply.GetNack() == nil || !strings.Contains(out.Reply.GetNack().GetError(), lb2.GetKey()) {
		t.Fatalf("update with only the refused Service: %v, want a NACK naming %s", out.Reply, lb2.GetKey())
	}
	t.Logf("nack: %s; kernel calls %v", out.Reply.GetNack().GetError(), k.take())
	if after := nftIn(t, ns, "", "list", "table", "inet", "doorman"); after != before {
		t.Errorf("the refused update changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The control plane's next update carries lb2 again and a good change:
	// the good one applies in one Apply, lb2 is not tried again.
	view = []*doormanv1.Entry{node, web2, lb1, lb2}
	out = a.Handle(&doormanv1.SyncResponse{Version: 3, Upserts: []*doormanv1.Entry{lb2, web2}, ViewDigest: digestOf(view)})
	keptOut(t, a, k, out, lb2.GetKey(), "refused by the kernel")
	table := nftIn(t, ns, "", "list", "table", "inet", "doorman")
	if !strings.Contains(table, "10.244.9.9") || strings.Contains(table, "198.51.100.2") {
		t.Errorf("kernel after the good change: want web's new endpoint and nothing of lb2:\n%s", table)
	}

	// lb2 changes to a value the kernel takes: programmed, no longer listed.
	view = []*doormanv1.Entry{node, web2, lb1, lb2Fixed}
	fixApplies(t, a, ns, 4, view, lb2Fixed, "198.51.100.2")
	if c := a.Counters(); c.NotProgrammed != 0 || c.Rejections != 1 {
		t.Errorf("counters: not programmed %d, rejections %d; want 0, 1", c.NotProgrammed, c.Rejections)
	}
}

// keptOut checks the answer to an update holding a good change while the
// entry under key stays refused: an ack listing key as not programmed
// after one Apply, the agent's status giving the reason, and a full Sync
// that finds the rest right.
func keptOut(t *testing.T, a *agent.Agent, k *callCounter, out agent.Outcome, key, reason string) {
	t.Helper()
	if got := out.Reply.GetAck().GetNotProgrammed(); out.Reply.GetAck() == nil || len(got) != 1 || got[0] != key {
		t.Fatalf("update with a good change: %v, want an ack with %s not programmed", out.Reply, key)
	}
	if calls := k.take(); len(calls) != 1 || calls[0] != "apply" {
		t.Errorf("kernel calls %v, want one apply", calls)
	}
	st := a.Status(false)
	if len(st.GetNotProgrammed()) != 1 || !strings.Contains(st.GetNotProgrammed()[0], reason) {
		t.Errorf("status not programmed: %v, want one naming %q", st.GetNotProgrammed(), reason)
	}
	if r := a.Resync(agent.TriggerForeignChange); r.Err != nil || r.Ops != 0 {
		t.Errorf("resync: ops %d, err %v; want 0, nil", r.Ops, r.Err)
	}
}

// fixApplies sends the refused entry's fixed value as version: a clean
// ack, and the kernel holds want.
func fixApplies(t *testing.T, a *agent.Agent, ns *testnet.NS, version uint64, view []*doormanv1.Entry, fixed *doormanv1.Entry, want string) {
	t.Helper()
	out := a.Handle(&doormanv1.SyncResponse{Version: version, Upserts: []*doormanv1.Entry{fixed}, ViewDigest: digestOf(view)})
	if out.Reply.GetAck() == nil || len(out.Reply.GetAck().GetNotProgrammed()) != 0 {
		t.Fatalf("fixed entry %s: %v, want a clean ack", fixed.GetKey(), out.Reply)
	}
	if !strings.Contains(nftIn(t, ns, "", "list", "table", "inet", "doorman"), want) {
		t.Errorf("%s not in the kernel after its fix", want)
	}
}

// agentOnKernel is an agent on a real kernel in a fresh namespace named
// after prefix, its kernel calls counted; it skips (saying why) without
// the nft binary the test reads the table with.
func agentOnKernel(t *testing.T, prefix, why string) (*testnet.NS, *callCounter, *agent.Agent) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip(why)
	}
	ns := testnet.NewNS(t, prefix)
	dp, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	k := &callCounter{Kernel: dp}
	return ns, k, agent.New("node-1", state.New(), k, nil)
}

// webService is default/web on 10.96.0.10:80 with one endpoint.
func webService(t *testing.T, endpoint string) *doormanv1.Entry {
	return withDigest(t, &doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.10", Port: 80,
		Endpoints: []*doormanv1.Endpoint{{Ip: endpoint, Port: 8080}}})
}
