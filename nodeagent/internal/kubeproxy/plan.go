package kubeproxy

import (
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the table kube-proxy's nftables mode keeps, in the ip and
// ip6 families.
const TableName = "kube-proxy"

// iptablesTables are the iptables tables kube-proxy's iptables mode uses.
var iptablesTables = map[string]bool{"nat": true, "filter": true, "mangle": true}

// ownChains are the fixed chains of kube-proxy's iptables mode.
var ownChains = map[string]bool{
	"KUBE-SERVICES": true, "KUBE-EXTERNAL-SERVICES": true, "KUBE-NODEPORTS": true,
	"KUBE-POSTROUTING": true, "KUBE-MARK-MASQ": true, "KUBE-FORWARD": true,
	"KUBE-PROXY-FIREWALL": true, "KUBE-PROXY-CANARY": true,
}

// servicePrefixes start the names of its per-Service and per-endpoint
// chains.
var servicePrefixes = []string{"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-"}

// Owned reports whether an iptables chain is kube-proxy's (not the
// kubelet's, whose chains also start with KUBE-).
func Owned(chain string) bool {
	if ownChains[chain] {
		return true
	}
	for _, p := range servicePrefixes {
		if strings.HasPrefix(chain, p) {
			return true
		}
	}
	return false
}

// Table is what Plan needs of one table: its chains and their rules.
type Table struct {
	Table  *nftables.Table
	Chains []*nftables.Chain
	Rules  map[string][]*nftables.Rule // by chain name
}

// Removal is what goes, by table.
type Removal struct {
	// Tables are kube-proxy's own nftables tables, deleted whole.
	Tables []*nftables.Table
	// Jumps are the rules outside kube-proxy's chains that jump or go to
	// one of them.
	Jumps []*nftables.Rule
	// Chains are kube-proxy's iptables chains, flushed and then deleted.
	Chains []*nftables.Chain
}

// Empty reports whether there is nothing to remove.
func (r Removal) Empty() bool { return len(r.Tables)+len(r.Jumps)+len(r.Chains) == 0 }

// Plan decides what of tables is kube-proxy's.
func Plan(tables []Table) Removal {
	var out Removal
	for _, t := range tables {
		switch {
		case !isIP(t.Table.Family):
		case t.Table.Name == TableName:
			out.Tables = append(out.Tables, t.Table)
		case iptablesTables[t.Table.Name]:
			planIPTables(t, &out)
		}
	}
	return out
}

func isIP(f nftables.TableFamily) bool {
	return f == nftables.TableFamilyIPv4 || f == nftables.TableFamilyIPv6
}

// planIPTables adds kube-proxy's chains of one iptables-nft table, and the
// jumps to them from the others.
func planIPTables(t Table, out *Removal) {
	for _, c := range t.Chains {
		if Owned(c.Name) {
			out.Chains = append(out.Chains, c)
			continue
		}
		for _, r := range t.Rules[c.Name] {
			if target := jumpTarget(r); target != "" && Owned(target) {
				out.Jumps = append(out.Jumps, r)
			}
		}
	}
}

// jumpTarget is the chain a rule jumps or goes to ("" = none): iptables-nft
// writes -j CHAIN as the native verdict "jump CHAIN".
func jumpTarget(r *nftables.Rule) string {
	for _, e := range r.Exprs {
		if v, ok := e.(*expr.Verdict); ok && (v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
			return v.Chain
		}
	}
	return ""
}
