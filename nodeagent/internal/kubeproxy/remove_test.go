package kubeproxy_test

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/kubeproxy"
)

// in runs a command (nft, iptables, ip6tables) in ns.
func in(t *testing.T, ns *testnet.NS, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + ns.Path()}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

// others are rules that are not kube-proxy's, some in the tables and
// chains kube-proxy uses: another nftables table, the kubelet's KUBE-*
// chains with their jumps, and plain rules in the built-in chains.
func others(t *testing.T, ns *testnet.NS) {
	in(t, ns, "table inet firewall {\n chain input { type filter hook input priority 0; tcp dport 22 accept; }\n}\n", "nft", "-f", "-")
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, args := range [][]string{
			{"-t", "filter", "-N", "KUBE-FIREWALL"},
			{"-t", "filter", "-A", "KUBE-FIREWALL", "-p", "tcp", "--dport", "7", "-j", "DROP"},
			{"-t", "filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"},
			{"-t", "filter", "-A", "FORWARD", "-p", "tcp", "--dport", "8", "-j", "ACCEPT"},
			{"-t", "filter", "-A", "OUTPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"},
			{"-t", "nat", "-N", "KUBE-KUBELET-CANARY"},
			{"-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "10", "-j", "ACCEPT"},
			{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "11", "-j", "ACCEPT"},
			{"-t", "nat", "-A", "POSTROUTING", "-p", "tcp", "--dport", "12", "-j", "ACCEPT"},
			{"-t", "mangle", "-N", "KUBE-IPTABLES-HINT"},
		} {
			in(t, ns, "", append([]string{ipt + "-nft"}, args...)...)
		}
	}
}

// kubeProxyRules are what kube-proxy v1.36 leaves: its nftables tables
// (nftables mode) and its iptables chains with their jumps (iptables
// mode, iptables-nft), one Service with one endpoint.
func kubeProxyRules(t *testing.T, ns *testnet.NS) {
	in(t, ns, `table ip kube-proxy {
 chain nat-prerouting { type nat hook prerouting priority dstnat; jump services; }
 chain services { ip daddr 10.96.0.1 tcp dport 443 dnat to 10.250.0.10:6443; }
}
table ip6 kube-proxy {
 chain nat-output { type nat hook output priority -100; }
}
`, "nft", "-f", "-")
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, args := range [][]string{
			{"-t", "nat", "-N", "KUBE-SERVICES"},
			{"-t", "nat", "-N", "KUBE-POSTROUTING"},
			{"-t", "nat", "-N", "KUBE-MARK-MASQ"},
			{"-t", "nat", "-N", "KUBE-SVC-ABCDEF"},
			{"-t", "nat", "-N", "KUBE-SEP-GHIJKL"},
			{"-t", "nat", "-A", "KUBE-SERVICES", "-p", "tcp", "--dport", "443", "-j", "KUBE-SVC-ABCDEF"},
			{"-t", "nat", "-A", "KUBE-SVC-ABCDEF", "-j", "KUBE-SEP-GHIJKL"},
			{"-t", "nat", "-A", "KUBE-SEP-GHIJKL", "-j", "KUBE-MARK-MASQ"},
			{"-t", "nat", "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", "0x4000"},
			{"-t", "nat", "-I", "PREROUTING", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
			{"-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"},
			{"-t", "nat", "-A", "POSTROUTING", "-m", "comment", "--comment", "kubernetes postrouting rules", "-j", "KUBE-POSTROUTING"},
			{"-t", "filter", "-N", "KUBE-FORWARD"},
			{"-t", "filter", "-N", "KUBE-NODEPORTS"},
			{"-t", "filter", "-N", "KUBE-PROXY-FIREWALL"},
			{"-t", "filter", "-I", "FORWARD", "-m", "comment", "--comment", "kubernetes forwarding rules", "-j", "KUBE-FORWARD"},
			{"-t", "filter", "-A", "INPUT", "-m", "comment", "--comment", "kubernetes health check service ports", "-j", "KUBE-NODEPORTS"},
			{"-t", "filter", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "KUBE-PROXY-FIREWALL"},
			{"-t", "mangle", "-N", "KUBE-PROXY-CANARY"},
		} {
			in(t, ns, "", append([]string{ipt + "-nft"}, args...)...)
		}
	}
}

// TestRemove: in a namespace holding kube-proxy's rules beside others,
// Remove leaves exactly the ruleset of a namespace that only ever had the
// others; a second run finds nothing.
func TestRemove(t *testing.T) {
	node, reference := testnet.NewNS(t, "node"), testnet.NewNS(t, "ref")
	others(t, reference)
	others(t, node)
	kubeProxyRules(t, node)
	want := in(t, reference, "", "nft", "list", "ruleset")
	if before := in(t, node, "", "nft", "list", "ruleset"); before == want {
		t.Fatal("kube-proxy's rules are not in the ruleset: the test could not tell")
	}

	rm, err := kubeproxy.Remove(nil, node.Path())
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := in(t, node, "", "nft", "list", "ruleset"); got != want {
		t.Errorf("ruleset after Remove (-want +got):\n%s", cmp.Diff(want, got))
	}
	if len(rm.Tables) != 2 || len(rm.Chains) != 18 || len(rm.Jumps) != 12 {
		t.Errorf("removed %d tables, %d chains, %d jumps; want 2, 18, 12", len(rm.Tables), len(rm.Chains), len(rm.Jumps))
	}
	again, err := kubeproxy.Remove(nil, node.Path())
	if err != nil || !again.Empty() {
		t.Errorf("second Remove: %+v, %v; want nothing", again, err)
	}
}

// TestRemoveMany: a node with many Services (two chains each) is cleaned
// too; one batch of that size overflows the netlink socket.
func TestRemoveMany(t *testing.T) {
	node := testnet.NewNS(t, "node")
	var b strings.Builder
	b.WriteString("*nat\n:KUBE-SERVICES - [0:0]\n")
	const services = 1000
	for i := range services {
		fmt.Fprintf(&b, ":KUBE-SVC-%06d - [0:0]\n:KUBE-SEP-%06d - [0:0]\n", i, i)
	}
	b.WriteString("-A PREROUTING -j KUBE-SERVICES\n")
	for i := range services {
		fmt.Fprintf(&b, "-A KUBE-SERVICES -d 10.96.%d.%d/32 -p tcp --dport 80 -j KUBE-SVC-%06d\n", i/256, i%256, i)
		fmt.Fprintf(&b, "-A KUBE-SVC-%06d -j KUBE-SEP-%06d\n", i, i)
		fmt.Fprintf(&b, "-A KUBE-SEP-%06d -p tcp -j DNAT --to-destination 10.244.%d.%d:8080\n", i, i/256, i%256)
	}
	b.WriteString("COMMIT\n")
	in(t, node, b.String(), "iptables-nft-restore", "--noflush")

	rm, err := kubeproxy.Remove(nil, node.Path())
	if err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if len(rm.Chains) != 2*services+1 {
		t.Errorf("removed %d chains, want %d", len(rm.Chains), 2*services+1)
	}
	if got := in(t, node, "", "nft", "list", "ruleset"); strings.Contains(got, "KUBE-") {
		t.Errorf("kube-proxy's chains left:\n%.2000s", got)
	}
}
