//go:build e2e

package faults

import (
	"context"
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// TestMigrateFromKubeProxy moves one node from kube-proxy to doorman under
// traffic, from each of kube-proxy's modes: the node's agent is stopped and
// cleaned up, upstream kube-proxy serves the node, then, while a client on
// the node keeps calling a Service, doorman's agent starts beside it,
// kube-proxy stops and `nodeagent --remove-kube-proxy-rules` deletes what
// it left. No call may fail, a connection opened through kube-proxy keeps
// working, kube-proxy's rules are gone, doorman's table is there, and
// every other table, chain and rule of the node (another table, the
// kubelet's iptables chains, plain iptables rules) is as before, handles
// included.
func TestMigrateFromKubeProxy(t *testing.T) {
	for _, mode := range []cluster.KubeProxyMode{cluster.KubeProxyNFTables, cluster.KubeProxyIPTables} {
		t.Run(string(mode), func(t *testing.T) { testMigrate(t, "node2", mode) })
	}
}

func testMigrate(t *testing.T, node string, mode cluster.KubeProxyMode) {
	ctx := context.Background()
	netns, err := c.NodeNetNSPath(node)
	if err != nil {
		t.Fatal(err)
	}
	// The node goes back to doorman alone, with the tables it had,
	// whatever happens.
	had := ruleset(t, netns).tables
	t.Cleanup(func() {
		if c.AgentPID(node) == 0 {
			if err := c.StartAgent(node); err != nil {
				t.Error(err)
			}
		}
		if _, err := c.RemoveKubeProxyRulesOn(ctx, node); err != nil {
			t.Error(err)
		}
		for tab := range ruleset(t, netns).tables {
			if !had[tab] && tab != "inet doorman" {
				_ = inNode(netns, append([]string{"nft", "delete", "table"}, strings.Fields(tab)...)...)
			}
		}
		if err := c.WaitNodeHealth(ctx, node, 60*time.Second); err != nil {
			t.Error(err)
		}
	})

	// A node on kube-proxy: doorman's agent stopped and cleaned up.
	c.StopAgent(node)
	if out, err := c.CleanupAgentOn(ctx, node); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("cleanup:\n%s", out)
	}
	addOthers(t, netns)
	before := ruleset(t, netns)
	kp, err := c.StartKubeProxyBeside(ctx, node, mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kp.Stop(5 * time.Second) })
	target := addr(webIP, webPort)
	dial, err := c.DialFromPod(ns, "web-"+node)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := ask(ctx, dial, target)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from %s through kube-proxy on %s: %v", target, node, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ruleset(t, netns).tables["inet doorman"] {
		t.Fatalf("doorman's table is on %s while only kube-proxy should serve it", node)
	}
	old, err := openSession(ctx, dial, target)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = old.Close() }()

	// Under traffic: doorman beside kube-proxy, kube-proxy stopped, its
	// rules removed.
	traffic := loads{fromPod(t, node, target)}
	time.Sleep(time.Second)
	if err := c.StartAgent(node); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitNodeHealth(ctx, node, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	kp.Stop(10 * time.Second)
	time.Sleep(500 * time.Millisecond)
	out, err := c.RemoveKubeProxyRulesOn(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("remove-kube-proxy-rules:\n%s", out)
	time.Sleep(2 * time.Second)
	if _, err := old.ask(ctx); err != nil {
		t.Errorf("connection opened through kube-proxy broke: %v", err)
	}
	traffic.finish(t, 0)

	after := ruleset(t, netns)
	if !after.tables["inet doorman"] {
		t.Errorf("no table inet doorman on %s after the migration", node)
	}
	for tab := range after.tables {
		if strings.HasSuffix(tab, " kube-proxy") {
			t.Errorf("kube-proxy's table %s still on %s", tab, node)
		}
	}
	for _, ch := range after.chains {
		if strings.HasPrefix(ch, "KUBE-") && !kubeletChains[ch] {
			t.Errorf("kube-proxy's iptables chain %s still on %s", ch, node)
		}
	}
	now := map[string]bool{}
	for _, o := range after.others {
		now[o] = true
	}
	for _, o := range before.others {
		if !now[o] {
			t.Errorf("changed or gone from %s: %s", node, o)
		}
		delete(now, o)
	}
	// kube-proxy's iptables mode also installs the kubelet's KUBE-FIREWALL
	// chain, its rule and the jumps from INPUT and OUTPUT (its
	// iptablesKubeletJumpChains): the kubelet's, never deleted by
	// kube-proxy --cleanup either, so they may stay, with the built-in
	// chains and tables iptables-nft adds for them. Anything else new is
	// a leftover.
	var added []string
	for o := range now {
		if !strings.Contains(o, `"KUBE-FIREWALL"`) && !strings.Contains(o, `"hook":`) && !strings.HasPrefix(o, `{"table":`) {
			added = append(added, o)
		}
	}
	if len(added) > 0 {
		sort.Strings(added)
		t.Errorf("%d objects new on %s, e.g.:\n%s", len(added), node, strings.Join(added[:min(len(added), 10)], "\n"))
	}
}

// kubeletChains are the kubelet's iptables chains: they stay.
var kubeletChains = map[string]bool{"KUBE-FIREWALL": true, "KUBE-KUBELET-CANARY": true, "KUBE-IPTABLES-HINT": true}

// addOthers puts in the node's namespace what is not kube-proxy's nor
// doorman's and must survive the migration: a table of its own, the
// kubelet's iptables chains with their jump, a plain iptables rule.
func addOthers(t *testing.T, netns string) {
	t.Helper()
	for _, args := range [][]string{
		{"nft", "add", "table", "inet", "e2e-other"},
		{"nft", "add", "chain", "inet", "e2e-other", "input", "{ type filter hook input priority 10; }"},
		{"nft", "add", "rule", "inet", "e2e-other", "input", "tcp", "dport", "9", "accept"},
	} {
		if err := inNode(netns, args...); err != nil {
			t.Fatal(err)
		}
	}
	// The kubelet's chains (kube-proxy's iptables mode rewrites the
	// content of KUBE-FIREWALL, so it gets none here), and a rule of
	// someone else.
	for _, args := range [][]string{
		{"-t", "filter", "-N", "KUBE-FIREWALL"},
		{"-t", "mangle", "-N", "KUBE-IPTABLES-HINT"},
		{"-t", "filter", "-A", "INPUT", "-j", "KUBE-FIREWALL"},
		{"-t", "filter", "-A", "INPUT", "-p", "tcp", "--dport", "9", "-j", "ACCEPT"},
		{"-t", "nat", "-N", "KUBE-KUBELET-CANARY"},
	} {
		if err := inNode(netns, append([]string{"iptables-nft"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
}

func inNode(netns string, args ...string) error {
	out, err := exec.Command("nsenter", append([]string{"--net=" + netns}, args...)...).CombinedOutput()
	if err != nil {
		return &runError{args: args, out: string(out), err: err}
	}
	return nil
}

type runError struct {
	args []string
	out  string
	err  error
}

func (e *runError) Error() string {
	return strings.Join(e.args, " ") + ": " + e.err.Error() + ": " + e.out
}

// nodeRuleset is a namespace's nftables ruleset as a comparison needs it.
type nodeRuleset struct {
	tables map[string]bool // "family name"
	chains []string        // every chain's name
	// others are the objects (tables, chains, rules, sets, …) outside
	// table inet doorman, each as its JSON with counters zeroed, minus
	// empty base chains (iptables-nft adds built-in chains as it needs
	// them) and tables left with nothing.
	others []string
}

func ruleset(t *testing.T, netns string) nodeRuleset {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+netns, "nft", "-j", "list", "ruleset").Output()
	if err != nil {
		t.Fatalf("nft list ruleset: %v", err)
	}
	var doc struct {
		Nftables []map[string]map[string]any `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("nft -j list ruleset: %v", err)
	}
	rs := nodeRuleset{tables: map[string]bool{}}
	type obj struct {
		kind  string
		table string
		body  map[string]any
	}
	var objs []obj
	withRules := map[string]bool{}
	for _, o := range doc.Nftables {
		for kind, body := range o {
			if kind == "metainfo" {
				continue
			}
			fam, _ := body["family"].(string)
			name, _ := body["name"].(string)
			table, _ := body["table"].(string)
			if kind == "table" {
				table = name
				rs.tables[fam+" "+name] = true
			}
			if kind == "chain" {
				rs.chains = append(rs.chains, name)
			}
			if kind == "rule" {
				withRules[fam+" "+table+" "+body["chain"].(string)] = true
			}
			zeroCounters(body)
			objs = append(objs, obj{kind: kind, table: fam + " " + table, body: body})
		}
	}
	used := map[string]bool{}
	var kept []obj
	for _, o := range objs {
		switch {
		case o.table == "inet doorman", o.kind == "table":
			continue
		case o.kind == "chain" && o.body["hook"] != nil && !withRules[o.table+" "+o.body["name"].(string)]:
			continue
		}
		used[o.table] = true
		kept = append(kept, o)
	}
	for _, o := range objs {
		if o.kind == "table" && used[o.table] {
			kept = append(kept, o)
		}
	}
	for _, o := range kept {
		b, _ := json.Marshal(map[string]any{o.kind: o.body})
		rs.others = append(rs.others, string(b))
	}
	sort.Strings(rs.others)
	return rs
}

// zeroCounters sets every packet and byte count in v to 0: traffic moves
// them, and they are not what a migration may change.
func zeroCounters(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if k == "packets" || k == "bytes" {
				v[k] = 0
				continue
			}
			zeroCounters(x)
		}
	case []any:
		for _, x := range v {
			zeroCounters(x)
		}
	}
}
