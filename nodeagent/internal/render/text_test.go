package render_test

import (
	"fmt"
	"math/big"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestTextIsWhatNftPrints programs a table holding every kind of rule (the
// kinds golden view under each local traffic mode, with --masquerade-all
// and with localhost NodePorts) in a fresh namespace, lists it with the
// nft on PATH and checks that nft prints each rule, its comment left out,
// as the rule's Text: the text doorman shows is what the kernel runs.
func TestTextIsWhatNftPrints(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatalf("nft not found on PATH (%v): install the Debian package nftables (make deps)", err)
	}
	opts := map[string]render.Options{"LocalhostNodePorts": {LocalhostNodePorts: true}}
	for name, o := range render.LocalModeOptions {
		opts[name] = o
	}
	for name, o := range opts {
		t.Run(name, func(t *testing.T) {
			view := render.KindsView()
			want := map[string][]string{}
			untyped := map[string]map[int]bool{}
			for _, c := range o.View(view).Chains {
				want[c.Name] = []string{}
				for i, r := range c.Rules {
					want[c.Name] = append(want[c.Name], normalizeSpace(r.Text))
					if r.Untyped {
						if untyped[c.Name] == nil {
							untyped[c.Name] = map[int]bool{}
						}
						untyped[c.Name][i] = true
					}
				}
			}
			if len(untyped) == 0 {
				t.Fatal("the kinds view renders no rule with untyped constants")
			}
			got := listRules(t, nft, o, view)
			for name, rules := range untyped {
				for i := range rules {
					if i < len(got[name]) {
						got[name][i] = typeConstants(got[name][i], want[name][i])
					}
				}
			}
			for _, m := range ruleMismatches(want, got) {
				t.Error(m)
			}
		})
	}
}

// TestGoldenFilesAreNftSyntax checks that nft reads every golden file
// (`nft -c -f`, in a fresh namespace): the table text is nft syntax,
// sets, maps and chains declared as the table has them.
func TestGoldenFilesAreNftSyntax(t *testing.T) {
	nft, err := exec.LookPath("nft")
	if err != nil {
		t.Fatalf("nft not found on PATH (%v): install the Debian package nftables (make deps)", err)
	}
	goldens, err := filepath.Glob(filepath.Join("testdata", "*.nft"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files in testdata (%v)", err)
	}
	for _, path := range goldens {
		t.Run(filepath.Base(path), func(t *testing.T) {
			ns := testnet.NewNS(t, "nftc")
			out, err := exec.Command("ip", "netns", "exec", ns.Name, nft, "-c", "-f", path).CombinedOutput()
			if err != nil {
				t.Errorf("nft -c -f %s: %v\n%s", path, err, tail(out))
			}
		})
	}
}

// listRules programs the view's table in a fresh namespace and returns
// each chain's rules as nft prints them, without their comments.
func listRules(t *testing.T, nft string, opts render.Options, view map[string]*doormanv1.Entry) map[string][]string {
	node := testnet.NewNS(t, "node")
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: node.Path(), Render: opts})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	out, err := exec.Command("ip", "netns", "exec", node.Name, nft, "list", "table", render.TableFamily, render.TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v\n%s", err, tail(out))
	}
	return chainRules(string(out))
}

var (
	chainLine   = regexp.MustCompile(`^chain (\S+) \{$`)
	commentTail = regexp.MustCompile(` comment ".*"$`)
)

// chainRules reads nft's listing of a table: each chain's rules, comments
// left out, whitespace normalised.
func chainRules(listing string) map[string][]string {
	rules := map[string][]string{}
	chain := ""
	for _, line := range strings.Split(listing, "\n") {
		line = normalizeSpace(line)
		switch m := chainLine.FindStringSubmatch(line); {
		case m != nil:
			chain = m[1]
			rules[chain] = []string{}
		case chain == "":
		case line == "}":
			chain = ""
		case line == "" || strings.HasPrefix(line, "type "):
		default:
			rules[chain] = append(rules[chain], commentTail.ReplaceAllString(line, ""))
		}
	}
	return rules
}

// ruleMismatches lists the chains and rules where the texts differ.
func ruleMismatches(want, got map[string][]string) []string {
	var out []string
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			out = append(out, "nft lists chain "+name+", which the table lacks")
		}
	}
	sort.Strings(names)
	for _, name := range names {
		w, g := want[name], got[name]
		if g == nil {
			out = append(out, "nft does not list chain "+name)
			continue
		}
		for i := range max(len(w), len(g)) {
			var ws, gs string
			if i < len(w) {
				ws = w[i]
			}
			if i < len(g) {
				gs = g[i]
			}
			if ws != gs {
				out = append(out, fmt.Sprintf("chain %s rule %d:\n\tText: %s\n\tnft:  %s", name, i, ws, gs))
			}
		}
	}
	return out
}

// typeConstants replaces each constant nft prints as untyped hex
// ("0xaf4010a [invalid type]") with the word of text at its place when it
// holds the same bytes: an address, or a port.
func typeConstants(listed, text string) string {
	l, w := strings.Fields(listed), strings.Fields(text)
	out := make([]string, 0, len(l))
	for i, j := 0, 0; i < len(l); i, j = i+1, j+1 {
		if i+2 < len(l) && strings.HasPrefix(l[i], "0x") && l[i+1] == "[invalid" && l[i+2] == "type]" && j < len(w) {
			if v, ok := new(big.Int).SetString(l[i][2:], 16); ok && v.Cmp(constantValue(w[j])) == 0 {
				out = append(out, w[j])
				i += 2
				continue
			}
		}
		out = append(out, l[i])
	}
	return strings.Join(out, " ")
}

// constantValue is an address or port as the number its bytes make; nil
// for another word.
func constantValue(word string) *big.Int {
	if a, err := netip.ParseAddr(word); err == nil {
		return new(big.Int).SetBytes(a.AsSlice())
	}
	if p, err := strconv.ParseUint(word, 10, 16); err == nil {
		return new(big.Int).SetUint64(p)
	}
	return big.NewInt(-1)
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }
