package dataplane

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// serviceIPElement is 10.96.0.<last> . tcp . <port> : goto <chain> in
// service-ips.
func serviceIPElement(last byte, port uint16, chain string) render.Element {
	return render.Element{Set: render.MapServiceIPs, Key: []byte{10, 96, 0, last, 6, 0, 0, 0, byte(port >> 8), byte(port), 0, 0},
		Verdict: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

func jump(chain string) render.Rule {
	return render.Rule{Text: "jump " + chain, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
}

func mustSet(t *testing.T, name string) render.Set {
	t.Helper()
	s, ok := render.SetByName(name)
	if !ok {
		t.Fatalf("no set %s", name)
	}
	return s
}

func TestTransactionString(t *testing.T) {
	var tx Transaction
	tx.deleteTable()
	tx.addTable()
	tx.addSet(mustSet(t, render.MapServiceIPs))
	tx.addSet(mustSet(t, render.SetPodCIDRs))
	tx.addSet(mustSet(t, render.SetAffinityTCP))
	tx.addChain(render.Chain{Name: "nat-prerouting", Hook: &render.Hook{Type: "nat", Hook: "prerouting", Priority: -100}, Rules: []render.Rule{jump("services")}})
	tx.addChain(render.Chain{Name: "services"})
	tx.flushChain("services")
	tx.addRules(render.Chain{Name: "nat-prerouting", Rules: []render.Rule{jump("services")}})
	tx.deleteElements([]render.Element{serviceIPElement(10, 80, "service-1")})
	tx.addElements([]render.Element{serviceIPElement(10, 80, "service-2"), serviceIPElement(11, 443, "service-1")})
	tx.deleteChain("service-3")
	tx.addElements(nil)
	tx.addRules(render.Chain{Name: "services"})

	want := strings.Join([]string{
		"delete table inet doorman",
		"add table inet doorman",
		"add map inet doorman service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }",
		"add set inet doorman pod-cidrs { type ipv4_addr; flags interval; }",
		"add set inet doorman affinity-tcp { type ipv4_addr . ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic,timeout; size 1048576; }",
		"add chain inet doorman nat-prerouting { type nat hook prerouting priority -100; policy accept; }",
		"add chain inet doorman services",
		"flush chain inet doorman services",
		"add rule inet doorman nat-prerouting jump services",
		"delete element inet doorman service-ips { 10.96.0.10 . tcp . 80 }",
		"add element inet doorman service-ips { 10.96.0.10 . tcp . 80 : goto service-2 }",
		"add element inet doorman service-ips { 10.96.0.11 . tcp . 443 : goto service-1 }",
		"delete chain inet doorman service-3",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, tx.String()); diff != "" {
		t.Errorf("String (-want +got):\n%s", diff)
	}
	// Rules are counted one each, elements one each, the rest one per
	// operation; empty rule and element lists add no operation.
	if got, want := tx.objects(), 13; got != want {
		t.Errorf("objects: %d, want %d", got, want)
	}
	if err := tx.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestTransactionValidate(t *testing.T) {
	endpoint := render.Element{Set: render.MapServiceEndpoints, Key: make([]byte, 16), Value: make([]byte, 8)}
	for _, tc := range []struct {
		name    string
		build   func(tx *Transaction)
		wantErr string
	}{
		{"empty", func(*Transaction) {}, ""},
		{"map elements with values", func(tx *Transaction) {
			tx.addElements([]render.Element{serviceIPElement(1, 80, "service-1"), endpoint})
		}, ""},
		{"a delete needs no value", func(tx *Transaction) {
			tx.deleteElements([]render.Element{{Set: render.MapServiceIPs, Key: []byte{1}}})
		}, ""},
		{"unknown set", func(tx *Transaction) {
			tx.addElements([]render.Element{{Set: "nope", Key: []byte{1}}})
		}, `element of unknown set "nope"`},
		{"verdict map element without a verdict", func(tx *Transaction) {
			tx.addElements([]render.Element{{Set: render.MapServiceIPs, Key: []byte{1}}})
		}, "does not match the set's type"},
		{"set element with a value", func(tx *Transaction) {
			tx.addElements([]render.Element{{Set: render.SetClusterIPs, Key: []byte{10, 0, 0, 1}, Value: []byte{1}}})
		}, "does not match the set's type"},
		{"element without a key", func(tx *Transaction) {
			tx.deleteElements([]render.Element{{Set: render.SetClusterIPs}})
		}, "element without a key"},
		{"add an unknown set", func(tx *Transaction) { tx.addSet(render.Set{Name: "nope"}) }, `unknown set "nope"`},
		{"chain without a name", func(tx *Transaction) { tx.flushChain("") }, "chain without a name"},
		{"unknown hook", func(tx *Transaction) {
			tx.addChain(render.Chain{Name: "x", Hook: &render.Hook{Type: "nat", Hook: "ingress"}})
		}, `unknown hook "ingress"`},
		{"rule without expressions", func(tx *Transaction) {
			tx.addRules(render.Chain{Name: "x", Rules: []render.Rule{{Text: "accept"}}})
		}, "has no expressions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tx Transaction
			tc.build(&tx)
			err := tx.validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("validate: %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("validate: %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}
