package dataplane

import (
	"fmt"
	"sort"
	"strings"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Inspect reads doorman's table back from the kernel: chains with their
// rules as nft text (from the rules' comments), sets and maps with their
// element counts and, when elements is set, the elements as nft text. It
// reads the elements in either case (netlink has no element count); it is
// meant for operators, not for the update path.
func (d *Dataplane) Inspect(elements bool) (*doormanv1.GetKernelResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kt, err := d.read(true, true)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	return describe(kt, elements), nil
}

// describe lists a table (nil: none) as Inspect answers: chains in the
// layout's order, then the others by name; sets in the layout's order,
// then unknown ones by name; elements sorted.
func describe(kt *kernelTable, elements bool) *doormanv1.GetKernelResponse {
	resp := &doormanv1.GetKernelResponse{Table: render.TableFamily + " " + render.TableName}
	if kt == nil {
		return resp
	}
	order := map[string]int{}
	for i, c := range render.StaticChains() {
		order[c.Name] = i
	}
	names := make([]string, 0, len(kt.chains))
	for name := range kt.chains {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool {
		oi, iok := order[names[i]]
		oj, jok := order[names[j]]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		kc := &doormanv1.KernelChain{Name: name, Rules: uint32(len(kt.rules[name]))}
		for _, r := range kt.rules[name] {
			text := ruleText(r)
			if text == "" {
				text = fmt.Sprintf("(rule without comment, %d expressions)", len(r.Exprs))
			}
			kc.Text = append(kc.Text, text)
		}
		resp.Chains = append(resp.Chains, kc)
	}
	for _, s := range render.Sets() {
		if _, ok := kt.sets[s.Name]; !ok {
			continue
		}
		km := &doormanv1.KernelMap{Name: s.Name, Type: s.TypeText(), ElementCount: uint32(len(kt.elements[s.Name]))}
		if elements {
			es := make([]render.Element, 0, len(kt.elements[s.Name]))
			for _, e := range kt.elements[s.Name] {
				es = append(es, e)
			}
			render.SortElements(es)
			for _, e := range es {
				km.Elements = append(km.Elements, render.FormatElement(e))
			}
		}
		resp.Maps = append(resp.Maps, km)
	}
	var unknown []string
	for name := range kt.sets {
		if _, ok := render.SetByName(name); !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		// Not doorman's layout (drift); the next Sync removes it.
		resp.Maps = append(resp.Maps, &doormanv1.KernelMap{Name: name, Type: "unknown"})
	}
	return resp
}

// Format prints what Inspect answered as text, one line per chain, rule,
// set and element, in Inspect's order:
//
//	table inet doorman
//	chain services
//		ip daddr . meta l4proto . th dport vmap @service-ips
//	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; 1 elements }
//		10.96.0.10 . tcp . 80 : goto service-1
//
// Fake.Dump prints its table so, and a kernel test compares the two.
func Format(resp *doormanv1.GetKernelResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s\n", resp.GetTable())
	for _, c := range resp.GetChains() {
		fmt.Fprintf(&b, "chain %s\n", c.GetName())
		for _, r := range c.GetText() {
			fmt.Fprintf(&b, "\t%s\n", r)
		}
	}
	for _, m := range resp.GetMaps() {
		fmt.Fprintf(&b, "map %s { type %s; %d elements }\n", m.GetName(), m.GetType(), m.GetElementCount())
		for _, e := range m.GetElements() {
			fmt.Fprintf(&b, "\t%s\n", e)
		}
	}
	return b.String()
}
