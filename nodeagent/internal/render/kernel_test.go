package render_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// TestNftListsTable programs a table holding a Service of every kind (the
// kinds golden view) in a fresh namespace and lists it with the nft on
// PATH, as an operator or a firewall tool would: nft must print every rule
// without failing or aborting, whatever expressions doorman's rules use.
//
// It does so once per local traffic mode (and with --masquerade-all): nft
// must also print each mode's local test, in the ClusterIP masquerade rule
// and in externalTrafficPolicy Local's split.
func TestNftListsTable(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatalf("nft not found on PATH (%v): install the Debian package nftables (make deps)", err)
	}
	modes := map[string][]string{ // what nft prints of the mode's tests
		"Default":             {"ip saddr @pod-cidrs"},
		"NodeCIDR":            {"ip saddr != @pod-cidrs", "ip saddr @pod-cidrs"},
		"ClusterCIDR":         {"ip saddr != 10.244.0.0/16", "ip6 saddr != fd00:10:244::/56", "ip saddr 10.244.0.0/16"},
		"ClusterCIDR-v4only":  {"ip saddr != 10.244.0.0/16", "ip saddr 10.244.0.0/16"},
		"BridgeInterface":     {`iifname != "cni0"`, `iifname "cni0"`},
		"InterfaceNamePrefix": {`iifname != "veth*"`, `iifname "veth*"`},
		"MasqueradeAll":       {"ip daddr @cluster-ips meta mark set", `iifname "cni0"`},
	}
	if len(modes) != len(render.LocalModeOptions) {
		t.Fatalf("%d modes checked, %d in LocalModeOptions", len(modes), len(render.LocalModeOptions))
	}
	for name, want := range modes {
		t.Run(name, func(t *testing.T) { nftListsTable(t, nft, render.LocalModeOptions[name], want) })
	}
	// Localhost NodePorts: the DNAT of the node's own packets to
	// 127.0.0.0/8 and the drop of everyone else's (CVE-2020-8558), as
	// nft decodes them (the comment that follows holds doorman's text).
	t.Run("LocalhostNodePorts", func(t *testing.T) {
		nftListsTable(t, nft, render.Options{LocalhostNodePorts: true}, []string{
			"ip daddr 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports comment",
			"ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state ! established,related ct status ! dnat drop comment",
		})
	})
}

func nftListsTable(t *testing.T, nft string, opts render.Options, want []string) {
	node := testnet.NewNS(t, "node")
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: node.Path(), Render: opts})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	view := render.KindsView()
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// The kernel gives the rules back as they were written: a second Sync
	// finds nothing to repair.
	if st, err := d.Sync(view); err != nil || st.Ops != 0 {
		t.Fatalf("second Sync: %d ops, %v; want 0 ops", st.Ops, err)
	}
	var affinity []string
	for _, c := range opts.View(view).Chains {
		if spec, ok := render.ParseChainName(c.Name); ok && spec.Affinity > 0 {
			affinity = append(affinity, c.Name)
		}
	}
	if len(affinity) == 0 {
		t.Fatal("the kinds view renders no affinity chain")
	}
	for _, args := range [][]string{
		{"list", "ruleset"},
		{"list", "table", render.TableFamily, render.TableName},
		{"-j", "list", "ruleset"},
	} {
		cmd := exec.Command("ip", append([]string{"netns", "exec", node.Name, nft}, args...)...)
		out, err := cmd.CombinedOutput()
		name := "nft " + strings.Join(args, " ")
		if err != nil {
			t.Errorf("%s: %v\n%s", name, err, tail(out))
			continue
		}
		for _, c := range affinity {
			if !strings.Contains(string(out), c) {
				t.Errorf("%s does not name chain %s", name, c)
			}
		}
		if args[0] == "-j" {
			continue // JSON spells expressions its own way
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("%s does not print %q", name, w)
			}
		}
	}
}

// tail is the end of nft's output, where an abort's message is.
func tail(out []byte) string {
	const n = 2000
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(out)
}
