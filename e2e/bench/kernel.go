package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// objects counts what a system keeps in a node's kernel.
type objects struct {
	Rules, Chains, Elements int
}

func (o objects) total() int { return o.Rules + o.Chains + o.Elements }

// wanted is an endpoint a change put behind a Service's ClusterIP.
type wanted struct{ clusterIP, endpoint netip.Addr }

// prober is a kernel that can tell cheaply whether one Service port is
// dispatched, without reading every Service.
type prober interface {
	dispatches(clusterIP netip.Addr) (bool, error)
}

// kernel reads one system's state in one node's network namespace. Every
// method reads the kernel (netlink, or iptables-save for iptables mode);
// nothing is cached.
type kernel interface {
	// programmed counts the Service ports the system dispatches.
	programmed() (int, error)
	// present reports which of the wanted endpoints are in the kernel:
	// want maps a Service (bench/<service>, port http) to its ClusterIP
	// and an endpoint address; iptables mode, read as text, counts an
	// address that is an endpoint of any Service.
	present(want map[string]wanted) (map[string]bool, error)
	objects() (objects, error)
	// reset removes the system's state so the next start is cold.
	reset() error
	close()
}

// nftKernel reads a table through netlink.
type nftKernel struct {
	ns     netns.NsHandle
	conn   *nftables.Conn
	table  *nftables.Table
	others []*nftables.Table // also removed by reset and counted by objects
	// dispatch is the verdict map with one element per Service port.
	dispatch string
	// endpoint reports whether ip is an endpoint, from the table.
	endpoint func(k *nftKernel, want map[string]wanted) (map[string]bool, error)
	get      *elementGetter
}

// nftIn opens the network namespace nsName and an nftables connection in
// it; the caller closes the handle.
func nftIn(nsName string) (netns.NsHandle, *nftables.Conn, error) {
	h, err := netns.GetFromName(nsName)
	if err != nil {
		return h, nil, fmt.Errorf("netns %s: %w", nsName, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		_ = h.Close()
		return h, nil, fmt.Errorf("nftables in %s: %w", nsName, err)
	}
	return h, conn, nil
}

func openNFT(nsName string, family nftables.TableFamily, table, dispatch string, others ...*nftables.Table) (*nftKernel, error) {
	h, conn, err := nftIn(nsName)
	if err != nil {
		return nil, err
	}
	get, err := newElementGetter(h, uint8(family), table)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("nftables in %s: %w", nsName, err)
	}
	return &nftKernel{ns: h, conn: conn, table: &nftables.Table{Family: family, Name: table}, others: others, dispatch: dispatch, get: get}, nil
}

// dispatches looks the Service port clusterIP:80/tcp up in the dispatch
// map.
func (k *nftKernel) dispatches(clusterIP netip.Addr) (bool, error) {
	_, ok, err := k.get.get(k.dispatch, servicePortKey(clusterIP, unix.IPPROTO_TCP, servicePort))
	return ok, err
}

// doormanKernel is doorman's table: Service ports are elements of
// service-ips, endpoints values of service-endpoints (address . port).
func doormanKernel(nsName string) (*nftKernel, error) {
	k, err := openNFT(nsName, nftables.TableFamilyINet, "doorman", "service-ips")
	if err != nil {
		return nil, err
	}
	// Each Service's endpoints are looked up by key (its port and the
	// endpoint's index), never by reading the whole map.
	k.endpoint = func(k *nftKernel, want map[string]wanted) (map[string]bool, error) {
		found := map[string]bool{}
		for svc, w := range want {
			for i := range benchEndpoints {
				v, ok, err := k.get.get("service-endpoints", endpointSlotKey(w.clusterIP, unix.IPPROTO_TCP, servicePort, i))
				if err != nil {
					return nil, err
				}
				if ok && len(v) >= 4 && netip.AddrFrom4([4]byte(v[:4])) == w.endpoint {
					found[svc] = true
					break
				}
			}
		}
		return found, nil
	}
	return k, nil
}

// kubeProxyNFTKernel is kube-proxy's nftables table: Service ports are
// elements of service-ips; a Service's chain
// service-<hash>-<ns>/<svc>/<proto>/<port> dnats through an anonymous map
// of its endpoints ("numgen random mod 2 map { 0 : ip . port, … }"), or
// jumps to one chain per endpoint, endpoint-<hash>-…__<ip>/<port>.
func kubeProxyNFTKernel(nsName string) (*nftKernel, error) {
	k, err := openNFT(nsName, nftables.TableFamilyIPv4, "kube-proxy", "service-ips",
		&nftables.Table{Family: nftables.TableFamilyIPv6, Name: "kube-proxy"})
	if err != nil {
		return nil, err
	}
	k.endpoint = func(k *nftKernel, want map[string]wanted) (map[string]bool, error) {
		chains, err := k.conn.ListChainsOfTableFamily(k.table.Family)
		if err != nil {
			return nil, fmt.Errorf("list chains: %w", err)
		}
		bySuffix := map[string]string{} // "-bench/<svc>/tcp/http" → svc
		for svc := range want {
			bySuffix["-"+benchNamespace+"/"+svc+"/tcp/http"] = svc
		}
		found := map[string]bool{}
		for _, c := range chains {
			if c.Table.Name != k.table.Name {
				continue
			}
			for svc, w := range want {
				if strings.Contains(c.Name, "__"+w.endpoint.String()+"/") {
					found[svc] = true
				}
			}
			if !strings.HasPrefix(c.Name, "service-") {
				continue
			}
			i := strings.Index(c.Name[len("service-"):], "-")
			if i < 0 {
				continue
			}
			svc, ok := bySuffix[c.Name[len("service-")+i:]]
			if !ok || found[svc] {
				continue
			}
			ok, err := k.chainMaps(c, want[svc].endpoint)
			if err != nil {
				return nil, err
			}
			if ok {
				found[svc] = true
			}
		}
		return found, nil
	}
	return k, nil
}

func (k *nftKernel) elements(set string) ([]nftables.SetElement, error) {
	s, err := k.conn.GetSetByName(k.table, set)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", set, err)
	}
	elems, err := k.conn.GetSetElements(s)
	if err != nil {
		return nil, fmt.Errorf("elements of %s: %w", set, err)
	}
	return elems, nil
}

func (k *nftKernel) programmed() (int, error) {
	elems, err := k.elements(k.dispatch)
	if err != nil {
		return 0, nil //nolint:nilerr // no table yet: nothing programmed
	}
	return len(elems), nil
}

func (k *nftKernel) present(want map[string]wanted) (map[string]bool, error) {
	return k.endpoint(k, want)
}

// chainMaps reports whether ip is a value in a map a rule of the chain
// looks up (kube-proxy's "dnat … numgen random mod N map { … }").
func (k *nftKernel) chainMaps(c *nftables.Chain, ip netip.Addr) (bool, error) {
	rules, err := k.conn.GetRules(k.table, c)
	if err != nil {
		return false, fmt.Errorf("rules of %s: %w", c.Name, err)
	}
	want := ip.AsSlice()
	for _, r := range rules {
		for _, e := range r.Exprs {
			l, ok := e.(*expr.Lookup)
			if !ok {
				continue
			}
			elems, err := k.elements(l.SetName)
			if err != nil {
				return false, err
			}
			for _, el := range elems {
				if len(el.Val) >= 4 && bytes.Equal(el.Val[:4], want) {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

func (k *nftKernel) objects() (objects, error) {
	var o objects
	for _, t := range append([]*nftables.Table{k.table}, k.others...) {
		chains, err := k.conn.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return o, fmt.Errorf("list chains: %w", err)
		}
		for _, c := range chains {
			if c.Table.Name != t.Name {
				continue
			}
			o.Chains++
			rules, err := k.conn.GetRules(t, c)
			if err != nil {
				return o, fmt.Errorf("rules of %s: %w", c.Name, err)
			}
			o.Rules += len(rules)
		}
		sets, err := k.conn.GetSets(t)
		if err != nil {
			continue // no such table
		}
		for _, s := range sets {
			elems, err := k.conn.GetSetElements(s)
			if err != nil {
				return o, fmt.Errorf("elements of %s: %w", s.Name, err)
			}
			o.Elements += len(elems)
		}
	}
	return o, nil
}

func (k *nftKernel) reset() error {
	for _, t := range append([]*nftables.Table{k.table}, k.others...) {
		tables, err := k.conn.ListTablesOfFamily(t.Family)
		if err != nil {
			return fmt.Errorf("list tables: %w", err)
		}
		for _, have := range tables {
			if have.Name == t.Name {
				k.conn.DelTable(t)
			}
		}
	}
	if err := k.conn.Flush(); err != nil {
		return fmt.Errorf("delete table %s: %w", k.table.Name, err)
	}
	return nil
}

func (k *nftKernel) close() {
	k.get.close()
	_ = k.conn.CloseLasting()
	_ = k.ns.Close()
}

// iptablesKernel reads kube-proxy's iptables rules with iptables-save in
// the node's namespace (the same view kube-proxy itself restores).
type iptablesKernel struct{ ns string }

func (k iptablesKernel) save(cmd string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", k.ns, cmd}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("%s in %s: %w", cmd, k.ns, err)
	}
	return string(out), nil
}

func (k iptablesKernel) programmed() (int, error) {
	out, err := k.save("iptables-save", "-t", "nat")
	if err != nil {
		return 0, err
	}
	return countServiceJumps(out), nil
}

// countServiceJumps counts the Service ports in iptables-save output: one
// "-A KUBE-SERVICES … -j KUBE-SVC-…" rule each.
func countServiceJumps(save string) int {
	n := 0
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A KUBE-SERVICES ") && strings.Contains(l, "-j KUBE-SVC-") {
			n++
		}
	}
	return n
}

func (k iptablesKernel) present(want map[string]wanted) (map[string]bool, error) {
	out, err := k.save("iptables-save", "-t", "nat")
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for svc, w := range want {
		if strings.Contains(out, "--to-destination "+w.endpoint.String()+":") {
			found[svc] = true
		}
	}
	return found, nil
}

func (k iptablesKernel) objects() (objects, error) {
	var o objects
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := k.save(cmd)
		if err != nil {
			return o, err
		}
		r, c := countSave(out)
		o.Rules += r
		o.Chains += c
	}
	return o, nil
}

// countSave counts rules ("-A …") and chains (":NAME …") in iptables-save
// output.
func countSave(save string) (rules, chains int) {
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, "-A "):
			rules++
		case strings.HasPrefix(l, ":"):
			chains++
		}
	}
	return rules, chains
}

func (k iptablesKernel) reset() error { return nil } // kube-proxy restores its chains in full at start
func (k iptablesKernel) close()       {}

// generations reports nftables commits in a namespace: every batch that
// changes any table (iptables-nft included) ends with a NEWGEN message.
type generations struct {
	conn *nftables.Conn
	mon  *nftables.Monitor
	ns   netns.NsHandle
	c    chan time.Time
}

// pollTick is how often the kernel is read once commit events stopped.
const pollTick = 20 * time.Millisecond

func watchGenerations(nsName string) (*generations, error) {
	h, conn, err := nftIn(nsName)
	if err != nil {
		return nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(4096))
	events, err := conn.AddGenerationalMonitor(mon)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("nftables monitor in %s: %w", nsName, err)
	}
	g := &generations{conn: conn, mon: mon, ns: h, c: make(chan time.Time, 1024)}
	go func() {
		for range events {
			select {
			case g.c <- time.Now():
			default: // the reader is behind; it checks the kernel anyway
			}
		}
		close(g.c)
	}()
	return g, nil
}

// drain forgets the commits seen so far.
func (g *generations) drain() {
	for {
		select {
		case _, ok := <-g.c:
			if !ok {
				return
			}
		default:
			return
		}
	}
}

func (g *generations) close() {
	_ = g.mon.Close()
	_ = g.ns.Close()
}

// commitClock yields, each time the kernel may have changed, the time of
// the last nftables commit seen. The monitor cannot decode every
// iptables-nft rule and then ends; from there on it ticks every pollTick
// and yields the tick's time (late by at most one tick).
type commitClock struct {
	events <-chan time.Time
	ticker *time.Ticker
}

func newCommitClock(g *generations, tick time.Duration) *commitClock {
	return &commitClock{events: g.c, ticker: time.NewTicker(tick)}
}

func (c *commitClock) stop() { c.ticker.Stop() }

func (c *commitClock) next(ctx context.Context) (time.Time, error) {
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case at, ok := <-c.events:
			if !ok {
				c.events = nil // polling only
				c.ticker.Reset(pollTick)
				continue
			}
			for {
				select {
				case later, ok := <-c.events:
					if !ok {
						c.events = nil
						c.ticker.Reset(pollTick)
						return at, nil
					}
					at = later
				default:
					return at, nil
				}
			}
		case <-c.ticker.C:
			return time.Now(), nil
		}
	}
}

// waitFor returns when check first holds, and the time of the kernel
// commit that made it hold (see commitClock).
func waitFor(ctx context.Context, g *generations, tick time.Duration, check func() (bool, error)) (time.Time, error) {
	c := newCommitClock(g, tick)
	defer c.stop()
	for {
		at, err := c.next(ctx)
		if err != nil {
			return time.Time{}, err
		}
		ok, err := check()
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return at, nil
		}
	}
}
