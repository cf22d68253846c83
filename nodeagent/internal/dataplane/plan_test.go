package dataplane

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// webEntry is default/web, 10.96.0.10:80/TCP, with the endpoints given
// (addresses, port 8080).
func webEntry(endpoints ...string) *doormanv1.Entry { return webEntryPort(8080, endpoints...) }

func webEntryPort(port uint32, endpoints ...string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.10", Port: 80}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: port})
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func rendered(entries ...*doormanv1.Entry) *render.Table {
	view := map[string]*doormanv1.Entry{}
	for _, e := range entries {
		view[e.GetKey()] = e
	}
	return render.Options{}.View(view)
}

// kernelOf is the table as the kernel holds it once want is programmed.
func kernelOf(want *render.Table) *kernelTable {
	table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	kt := &kernelTable{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{},
		sets: map[string]*nftables.Set{}, elements: map[string]map[string]render.Element{}}
	for _, s := range want.Sets {
		kt.sets[s.Name] = nftSet(table, s)
	}
	for _, c := range want.Chains {
		nc := nftChain(table, c)
		kt.chains[c.Name] = nc
		for _, r := range c.Rules {
			kt.rules[c.Name] = append(kt.rules[c.Name], nftRule(table, nc, r))
		}
	}
	for _, e := range want.Elements {
		if kt.elements[e.Set] == nil {
			kt.elements[e.Set] = map[string]render.Element{}
		}
		kt.elements[e.Set][e.ID()] = e
	}
	return kt
}

// summary lists a transaction's operations, rules by count only (their
// text is the renderer's).
func summary(tx Transaction) []string {
	var out []string
	for _, o := range tx.ops {
		switch o.kind {
		case opDeleteTable:
			out = append(out, "delete table")
		case opAddTable:
			out = append(out, "add table")
		case opAddSet:
			out = append(out, "add set "+o.set.Name)
		case opAddChain:
			out = append(out, "add chain "+o.chain.Name)
		case opFlushChain:
			out = append(out, "flush chain "+o.chain.Name)
		case opAddRules:
			out = append(out, fmt.Sprintf("add %d rules to %s", len(o.chain.Rules), o.chain.Name))
		case opDeleteChain:
			out = append(out, "delete chain "+o.chain.Name)
		case opDeleteElements:
			for _, e := range o.elements {
				out = append(out, "delete element "+e.Set+" "+render.FormatElement(e))
			}
		case opAddElements:
			for _, e := range o.elements {
				out = append(out, "add element "+e.Set+" "+render.FormatElement(e))
			}
		}
	}
	return out
}

// fullAdd is the summary of the transaction that programs want into a
// kernel without the table.
func fullAdd(want *render.Table) []string {
	out := []string{"add table"}
	for _, s := range want.Sets {
		out = append(out, "add set "+s.Name)
	}
	for _, c := range want.Chains {
		out = append(out, "add chain "+c.Name)
	}
	for _, c := range want.Chains {
		if len(c.Rules) > 0 {
			out = append(out, fmt.Sprintf("add %d rules to %s", len(c.Rules), c.Name))
		}
	}
	for _, e := range want.Elements {
		out = append(out, "add element "+e.Set+" "+render.FormatElement(e))
	}
	return out
}

func TestPlanSync(t *testing.T) {
	one := rendered(webEntry("10.244.1.1"))
	moved := rendered(webEntry("10.244.1.2"))
	otherPort := rendered(webEntryPort(8081, "10.244.1.1"))
	for _, tc := range []struct {
		name         string
		kernel       func() *kernelTable
		want         *render.Table
		wantOps      []string
		wantRebuild  bool
		wantForeign  []string
		wantRepaired []string
	}{
		{name: "no table: everything added", kernel: func() *kernelTable { return nil }, want: one, wantOps: fullAdd(one)},
		{name: "the table is right: nothing", kernel: func() *kernelTable { return kernelOf(one) }, want: one},
		{
			name: "one element changed: one delete, one add", kernel: func() *kernelTable { return kernelOf(one) }, want: otherPort,
			wantOps: []string{
				"delete element service-endpoints 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.1.1 . 8080",
				"add element service-endpoints 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.1.1 . 8081",
			},
		},
		{
			name: "an endpoint moved: its elements deleted, the new ones added", kernel: func() *kernelTable { return kernelOf(one) }, want: moved,
			wantOps: []string{
				"delete element service-endpoints 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.1.1 . 8080",
				"delete element hairpin-pairs 10.244.1.1 . 10.244.1.1",
				"add element service-endpoints 10.96.0.10 . tcp . 80 . 0x00000000 : 10.244.1.2 . 8080",
				"add element hairpin-pairs 10.244.1.2 . 10.244.1.2",
			},
		},
		{
			name: "a foreign chain: deleted on its own", want: one,
			kernel: func() *kernelTable {
				kt := kernelOf(one)
				kt.chains["someone-else"] = &nftables.Chain{Name: "someone-else"}
				return kt
			},
			wantForeign: []string{"someone-else"},
		},
		{
			name: "a flushed chain and an unused per-K chain: repaired", want: one,
			kernel: func() *kernelTable {
				kt := kernelOf(one)
				kt.rules[render.ChainServices] = nil
				kt.chains["service-3"] = &nftables.Chain{Name: "service-3"}
				return kt
			},
			wantOps: []string{
				"flush chain services", "flush chain service-3",
				fmt.Sprintf("add %d rules to services", len(chainOf(t, one, render.ChainServices).Rules)),
				fmt.Sprintf("add %d rules to service-3", len(endpointChain(t, "service-3").Rules)),
			},
			wantRepaired: []string{"services", "service-3"},
		},
		{
			name: "a set of another type: the table rebuilt", want: one,
			kernel: func() *kernelTable {
				kt := kernelOf(one)
				kt.sets[render.MapServiceIPs] = &nftables.Set{Name: render.MapServiceIPs, KeyType: nftables.TypeIPAddr}
				kt.chains["someone-else"] = &nftables.Chain{Name: "someone-else"}
				return kt
			},
			wantOps: append([]string{"delete table"}, fullAdd(one)...), wantRebuild: true,
		},
		{
			name: "elements not read: only the skeleton compared", want: moved,
			kernel: func() *kernelTable {
				kt := kernelOf(one)
				kt.elements, kt.skeletonOnly = map[string]map[string]render.Element{}, true
				kt.rules[render.ChainServices] = nil
				return kt
			},
			wantOps: []string{
				"flush chain services",
				fmt.Sprintf("add %d rules to services", len(chainOf(t, one, render.ChainServices).Rules)),
			},
			wantRepaired: []string{"services"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := planSync(tc.kernel(), tc.want)
			if diff := cmp.Diff(tc.wantOps, summary(p.tx)); diff != "" {
				t.Errorf("operations (-want +got):\n%s", diff)
			}
			if (p.rebuild != "") != tc.wantRebuild {
				t.Errorf("rebuild %q, want %v", p.rebuild, tc.wantRebuild)
			}
			var foreign []string
			for _, d := range p.foreign {
				foreign = append(foreign, d.chain)
				if got, want := d.tx.String(), "delete chain inet doorman "+d.chain+"\n"; got != want {
					t.Errorf("foreign chain's transaction: %q, want %q", got, want)
				}
			}
			if diff := cmp.Diff(tc.wantForeign, foreign); diff != "" {
				t.Errorf("foreign chains (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRepaired, p.repaired); diff != "" {
				t.Errorf("repaired chains (-want +got):\n%s", diff)
			}
			if err := p.tx.validate(); err != nil {
				t.Errorf("validate: %v", err)
			}
		})
	}
}

func chainOf(t *testing.T, table *render.Table, name string) render.Chain {
	t.Helper()
	for _, c := range table.Chains {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no chain %s", name)
	return render.Chain{}
}

func endpointChain(t *testing.T, name string) render.Chain {
	t.Helper()
	c, ok := render.EndpointChain(name)
	if !ok {
		t.Fatalf("%s is no per-K chain", name)
	}
	return c
}

// synced is the bookkeeping of a Sync of want into a kernel without the
// table.
func synced(want *render.Table) *programmed {
	p := &programmed{}
	p.commitSync(want, planSync(nil, want))
	return p
}

func TestPlanApply(t *testing.T) {
	one, two := webEntry("10.244.1.1"), webEntry("10.244.1.1", "10.244.1.2")
	p := synced(rendered(one))
	ap, err := p.planApply([]Change{{Key: one.Key, Old: one, New: two}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"add chain service-2",
		fmt.Sprintf("add %d rules to service-2", len(endpointChain(t, "service-2").Rules)),
		"delete element service-ips 10.96.0.10 . tcp . 80 : goto service-1",
		"add element service-ips 10.96.0.10 . tcp . 80 : goto service-2",
		"add element service-endpoints 10.96.0.10 . tcp . 80 . 0x00000001 : 10.244.1.2 . 8080",
		"add element hairpin-pairs 10.244.1.2 . 10.244.1.2",
	}
	if diff := cmp.Diff(want, summary(ap.tx)); diff != "" {
		t.Errorf("operations (-want +got):\n%s", diff)
	}
	p.commitApply(ap)
	if diff := cmp.Diff([]string{"service-1"}, retired(p.planRetire())); diff != "" {
		t.Errorf("retired after the move to two endpoints (-want +got):\n%s", diff)
	}
}

func retired(dels []chainDeletion) []string {
	var out []string
	for _, d := range dels {
		out = append(out, d.chain)
	}
	return out
}

func TestPlanRetire(t *testing.T) {
	p := &programmed{chains: map[string]bool{"service-1": true, "service-3": true, "service-2": true}, chainUsers: map[string]int{"service-1": 2}}
	dels := p.planRetire()
	if diff := cmp.Diff([]string{"service-2", "service-3"}, retired(dels)); diff != "" {
		t.Errorf("retired (-want +got):\n%s", diff)
	}
	for _, d := range dels {
		if got, want := d.tx.String(), "delete chain inet doorman "+d.chain+"\n"; got != want {
			t.Errorf("transaction: %q, want %q", got, want)
		}
	}
}
