package render

import (
	"testing"

	"github.com/google/nftables/expr"
)

// TestLocalhostNodePortRules: the DNAT of 127.0.0.0/8:<nodePort> is in a
// chain hooked at nat output only (never prerouting: packets from outside
// must not match) and only with the option; the drop of packets to
// 127.0.0.0/8 from elsewhere is on input with or without it.
func TestLocalhostNodePortRules(t *testing.T) {
	const dnat = "ip daddr 127.0.0.0/8 meta l4proto . th dport vmap @" + MapServiceNodePorts
	const drop = "ip daddr 127.0.0.0/8 ip saddr != 127.0.0.0/8 ct state ! established,related ct status ! dnat drop"
	for _, on := range []bool{false, true} {
		chains := map[string]Chain{}
		for _, c := range (Options{LocalhostNodePorts: on}).View(kindsView()).Chains {
			chains[c.Name] = c
		}
		nat, ok := chains[ChainNATOutputLocalhost]
		if !ok || *nat.Hook != (Hook{"nat", "output", priorityDstNAT}) {
			t.Fatalf("option %v: chain %s = %+v, want it hooked at nat output", on, ChainNATOutputLocalhost, nat)
		}
		var texts []string
		for _, r := range nat.Rules {
			texts = append(texts, r.Text)
		}
		if want := map[bool]int{false: 0, true: 1}[on]; len(texts) != want || (on && texts[0] != dnat) {
			t.Errorf("option %v: %s rules %q, want %d (%q)", on, ChainNATOutputLocalhost, texts, want, dnat)
		}
		for name, c := range chains {
			for _, r := range c.Rules {
				if r.Text == dnat && name != ChainNATOutputLocalhost {
					t.Errorf("option %v: chain %s holds %q too", on, name, dnat)
				}
			}
		}
		in, ok := chains[ChainFilterInputLocalnet]
		if !ok || *in.Hook != (Hook{"filter", "input", priorityFilter}) || len(in.Rules) != 1 || in.Rules[0].Text != drop {
			t.Errorf("option %v: chain %s = %+v, want %q hooked at filter input", on, ChainFilterInputLocalnet, in, drop)
		}
	}
}

// TestLocalnetDropMatches reads the drop rule's expressions: destination
// in 127.0.0.0/8, source not, neither established nor related, not DNATed.
func TestLocalnetDropMatches(t *testing.T) {
	var cmps []*expr.Cmp
	var payloads []*expr.Payload
	var cts []expr.CtKey
	for _, e := range localnetDropRule().Exprs {
		switch e := e.(type) {
		case *expr.Cmp:
			cmps = append(cmps, e)
		case *expr.Payload:
			payloads = append(payloads, e)
		case *expr.Ct:
			cts = append(cts, e.Key)
		}
	}
	if len(payloads) != 2 || payloads[0].Offset != fam4.daddrOff || payloads[1].Offset != fam4.saddrOff {
		t.Fatalf("payloads %+v, want daddr then saddr", payloads)
	}
	// nfproto, daddr, saddr, ct state, ct status
	if len(cmps) != 5 || cmps[1].Op != expr.CmpOpEq || cmps[2].Op != expr.CmpOpNeq ||
		string(cmps[1].Data) != "\x7f\x00\x00\x00" || string(cmps[2].Data) != "\x7f\x00\x00\x00" {
		t.Fatalf("comparisons %+v, want daddr == 127.0.0.0/8, saddr != 127.0.0.0/8", cmps)
	}
	if len(cts) != 2 || cts[0] != expr.CtKeySTATE || cts[1] != expr.CtKeySTATUS {
		t.Errorf("ct keys %v, want state then status", cts)
	}
	if v, ok := localnetDropRule().Exprs[len(localnetDropRule().Exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
		t.Errorf("last expression %+v, want drop", v)
	}
}
