package render_test

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// TestOldRulesAreRewritten: an agent finding rules it does not recognise
// as current rewrites them, though their text is right: rules whose
// comments hold only the text (as written before comments carried the
// hash of the expressions), and a rule whose expressions differ from
// today's under today's text and a comment made from them.
func TestOldRulesAreRewritten(t *testing.T) {
	node := testnet.NewNS(t, "node")
	view := render.KindsView()
	sync := func(what string) dataplane.Stats {
		d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: node.Path()})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer func() { _ = d.Close() }()
		st, err := d.Sync(view)
		if err != nil {
			t.Fatalf("%s: Sync: %v", what, err)
		}
		return st
	}
	sync("first start")

	conn, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyINet, Name: render.TableName}
	want := map[string][]render.Rule{}
	for _, c := range render.View(view).Chains {
		want[c.Name] = c.Rules
	}
	// Every rule of services with its text only; the masquerade mark of
	// nodeport-2 with another mark bit, its comment made from those
	// expressions.
	for _, r := range kernelRules(t, conn, table, render.ChainServices) {
		r.UserData = userdata.AppendString(nil, userdata.TypeComment, render.CommentText(commentOf(r)))
		conn.ReplaceRule(r)
	}
	mark := kernelRules(t, conn, table, "nodeport-2")[0]
	changed := render.Rule{Text: want["nodeport-2"][0].Text, Exprs: append([]expr.Any(nil), want["nodeport-2"][0].Exprs...)}
	changed.Exprs[1] = &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{0xff, 0x7f, 0xff, 0xff}, Xor: []byte{0, 0x80, 0, 0}}
	mark.Exprs, mark.UserData = changed.Exprs, userdata.AppendString(nil, userdata.TypeComment, changed.Comment())
	conn.ReplaceRule(mark)
	if err := conn.Flush(); err != nil {
		t.Fatalf("rewrite rules: %v", err)
	}

	if st := sync("upgrade"); st.Ops < 4 {
		t.Errorf("upgrade Sync: %d ops, want the 2 chains flushed and filled", st.Ops)
	}
	for _, name := range []string{render.ChainServices, "nodeport-2"} {
		got := kernelRules(t, conn, table, name)
		if len(got) != len(want[name]) {
			t.Fatalf("chain %s: %d rules, want %d", name, len(got), len(want[name]))
		}
		for i, r := range got {
			if c := commentOf(r); c != want[name][i].Comment() {
				t.Errorf("chain %s rule %d: comment %q, want %q", name, i, c, want[name][i].Comment())
			}
		}
	}
	if st := sync("restart"); st.Ops != 0 {
		t.Errorf("Sync after the upgrade: %d ops, want 0", st.Ops)
	}
}

func kernelRules(t *testing.T, conn *nftables.Conn, table *nftables.Table, chain string) []*nftables.Rule {
	t.Helper()
	rules, err := conn.GetRules(table, &nftables.Chain{Table: table, Name: chain})
	if err != nil || len(rules) == 0 {
		t.Fatalf("rules of chain %s: %d, %v", chain, len(rules), err)
	}
	return rules
}

func commentOf(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}
