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
func TestNftListsTable(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatalf("nft not found on PATH (%v): install the Debian package nftables (make deps)", err)
	}
	node := testnet.NewNS(t, "node")
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: node.Path()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	view := render.KindsView()
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	var affinity []string
	for _, c := range render.View(view).Chains {
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
