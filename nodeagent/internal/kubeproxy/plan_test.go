package kubeproxy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestOwned(t *testing.T) {
	for chain, want := range map[string]bool{
		"KUBE-SERVICES": true, "KUBE-NODEPORTS": true, "KUBE-PROXY-CANARY": true, "KUBE-PROXY-FIREWALL": true,
		"KUBE-SVC-ABC": true, "KUBE-SVL-ABC": true, "KUBE-EXT-ABC": true, "KUBE-FW-ABC": true, "KUBE-SEP-ABC": true,
		"KUBE-FIREWALL": false, "KUBE-KUBELET-CANARY": false, "KUBE-IPTABLES-HINT": false, "KUBE-MARK-DROP": false,
		"PREROUTING": false, "CILIUM_PRE_nat": false,
	} {
		if got := Owned(chain); got != want {
			t.Errorf("Owned(%q) = %v, want %v", chain, got, want)
		}
	}
}

// names lists what a Removal holds, readably.
func names(r Removal) []string {
	var out []string
	for _, t := range r.Tables {
		out = append(out, "table "+familyName(t.Family)+" "+t.Name)
	}
	for _, j := range r.Jumps {
		out = append(out, "jump "+j.Table.Name+" "+j.Chain.Name+" → "+jumpTarget(j))
	}
	for _, c := range r.Chains {
		out = append(out, "chain "+c.Table.Name+" "+c.Name)
	}
	return out
}

func TestPlan(t *testing.T) {
	v4 := func(name string) *nftables.Table {
		return &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	}
	nat, filter := v4("nat"), v4("filter")
	chain := func(t *nftables.Table, name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: t} }
	// -j TARGET, as iptables-nft writes it; goto for -g.
	jump := func(t *nftables.Table, from string, kind expr.VerdictKind, to string) *nftables.Rule {
		return &nftables.Rule{Table: t, Chain: chain(t, from), Exprs: []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: kind, Chain: to}}}
	}
	accept := &nftables.Rule{Table: nat, Chain: chain(nat, "PREROUTING"), Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}}
	tables := []Table{
		{Table: v4(TableName)},
		{Table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv6}},
		{Table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}}, // not kube-proxy's
		{Table: v4("firewall"), Chains: []*nftables.Chain{chain(v4("firewall"), "KUBE-SERVICES")}},
		{
			Table:  nat,
			Chains: []*nftables.Chain{chain(nat, "PREROUTING"), chain(nat, "KUBE-SERVICES"), chain(nat, "KUBE-SVC-X"), chain(nat, "KUBE-KUBELET-CANARY")},
			Rules: map[string][]*nftables.Rule{
				"PREROUTING":    {accept, jump(nat, "PREROUTING", expr.VerdictJump, "KUBE-SERVICES")},
				"KUBE-SERVICES": {jump(nat, "KUBE-SERVICES", expr.VerdictJump, "KUBE-SVC-X")},
			},
		},
		{
			Table:  filter,
			Chains: []*nftables.Chain{chain(filter, "INPUT"), chain(filter, "KUBE-FIREWALL"), chain(filter, "KUBE-NODEPORTS")},
			Rules: map[string][]*nftables.Rule{
				"INPUT": {jump(filter, "INPUT", expr.VerdictJump, "KUBE-FIREWALL"), jump(filter, "INPUT", expr.VerdictGoto, "KUBE-NODEPORTS")},
			},
		},
	}
	want := []string{
		"table ip kube-proxy", "table ip6 kube-proxy",
		"jump nat PREROUTING → KUBE-SERVICES", "jump filter INPUT → KUBE-NODEPORTS",
		"chain nat KUBE-SERVICES", "chain nat KUBE-SVC-X", "chain filter KUBE-NODEPORTS",
	}
	if diff := cmp.Diff(want, names(Plan(tables))); diff != "" {
		t.Errorf("Plan (-want +got):\n%s", diff)
	}
	if !Plan(nil).Empty() {
		t.Error("Plan(nil) is not empty")
	}
}
