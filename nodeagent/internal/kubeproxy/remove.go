package kubeproxy

import (
	"fmt"
	"os"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
)

// Remove deletes kube-proxy's rules (see Plan) in the network namespace
// at netnsPath ("" = the caller's) and logs what it deleted. kube-proxy
// must be stopped first: a running one puts its rules back. Running it
// again finds nothing and succeeds.
func Remove(log hclog.Logger, netnsPath string) (Removal, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("kube-proxy-rules")
	conn, closeNS, err := connect(netnsPath)
	if err != nil {
		return Removal{}, err
	}
	defer closeNS()
	tables, err := list(conn)
	if err != nil {
		return Removal{}, err
	}
	rm := Plan(tables)
	if rm.Empty() {
		log.Info("no kube-proxy rules in nftables")
		return rm, nil
	}
	if err := apply(conn, rm); err != nil {
		return Removal{}, err
	}
	for _, t := range rm.Tables {
		log.Info("deleted kube-proxy table", "table", familyName(t.Family)+" "+t.Name)
	}
	if len(rm.Chains)+len(rm.Jumps) > 0 {
		log.Info("deleted kube-proxy's iptables-nft chains and the jumps to them", "chains", len(rm.Chains), "jumps", len(rm.Jumps))
	}
	for _, c := range rm.Chains {
		log.Debug("deleted kube-proxy iptables chain", "table", familyName(c.Table.Family)+" "+c.Table.Name, "chain", c.Name)
	}
	for _, r := range rm.Jumps {
		log.Debug("deleted jump to a kube-proxy chain", "table", familyName(r.Table.Family)+" "+r.Table.Name,
			"chain", r.Chain.Name, "to", jumpTarget(r), "handle", r.Handle)
	}
	return rm, nil
}

func connect(netnsPath string) (*nftables.Conn, func(), error) {
	if netnsPath == "" {
		c, err := nftables.New()
		if err != nil {
			return nil, nil, fmt.Errorf("open nftables connection: %w", err)
		}
		return c, func() {}, nil
	}
	f, err := os.Open(netnsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open network namespace: %w", err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("open nftables connection: %w", err)
	}
	return c, func() { _ = f.Close() }, nil
}

// list reads the tables Plan looks at: kube-proxy's, and the iptables-nft
// tables with their chains and rules.
func list(conn *nftables.Conn) ([]Table, error) {
	all, err := conn.ListTables()
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []Table
	for _, t := range all {
		if !isIP(t.Family) || (t.Name != TableName && !iptablesTables[t.Name]) {
			continue
		}
		tab := Table{Table: t, Rules: map[string][]*nftables.Rule{}}
		if t.Name != TableName {
			for _, c := range chains {
				if c.Table.Name != t.Name || c.Table.Family != t.Family {
					continue
				}
				tab.Chains = append(tab.Chains, c)
				rules, err := conn.GetRules(t, c)
				if err != nil {
					return nil, fmt.Errorf("list rules of %s %s %s: %w", familyName(t.Family), t.Name, c.Name, err)
				}
				tab.Rules[c.Name] = rules
			}
		}
		out = append(out, tab)
	}
	return out, nil
}

// batchSize bounds the messages of one batch: the kernel acknowledges each,
// and a node with many Services (two chains each, per family) would
// overflow the socket's receive buffer in one.
const batchSize = 256

// apply deletes rm in order, in batches of at most batchSize: the jumps,
// then the chains' rules, then the chains (which reference each other),
// then kube-proxy's tables. Each step leaves what remains consistent:
// once the jumps are gone nothing reaches kube-proxy's chains.
func apply(conn *nftables.Conn, rm Removal) error {
	b := batch{conn: conn}
	for _, r := range rm.Jumps {
		b.add(func() error { return conn.DelRule(r) })
	}
	for _, c := range rm.Chains {
		b.add(func() error { conn.FlushChain(c); return nil })
	}
	for _, c := range rm.Chains {
		b.add(func() error { conn.DelChain(c); return nil })
	}
	for _, t := range rm.Tables {
		b.add(func() error { conn.DelTable(t); return nil })
	}
	b.flush()
	if b.err != nil {
		return fmt.Errorf("delete kube-proxy rules: %w", b.err)
	}
	return nil
}

// batch queues operations and sends them every batchSize; the first error
// stops it.
type batch struct {
	conn *nftables.Conn
	n    int
	err  error
}

func (b *batch) add(op func() error) {
	if b.err != nil {
		return
	}
	if b.err = op(); b.err != nil {
		return
	}
	if b.n++; b.n == batchSize {
		b.flush()
	}
}

func (b *batch) flush() {
	if b.err == nil && b.n > 0 {
		b.err = b.conn.Flush()
	}
	b.n = 0
}

func familyName(f nftables.TableFamily) string {
	if f == nftables.TableFamilyIPv6 {
		return "ip6"
	}
	return "ip"
}
