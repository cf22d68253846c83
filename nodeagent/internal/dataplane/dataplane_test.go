package dataplane_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

const (
	tcp  = doormanv1.Protocol_PROTOCOL_TCP
	ipv4 = doormanv1.IPFamily_IP_FAMILY_IPV4
	ipv6 = doormanv1.IPFamily_IP_FAMILY_IPV6
)

func ep(ip string, port uint32) *doormanv1.Endpoint { return &doormanv1.Endpoint{Ip: ip, Port: port} }

func spEntry(sp *doormanv1.ServicePort) *doormanv1.Entry {
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func nodeEntry(addrs ...string) *doormanv1.Entry {
	return &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "node", NodeportAddresses: addrs}}}
}

func viewOf(entries ...*doormanv1.Entry) map[string]*doormanv1.Entry {
	m := make(map[string]*doormanv1.Entry, len(entries))
	for _, e := range entries {
		m[e.GetKey()] = e
	}
	return m
}

func open(t testing.TB, ns *testnet.NS) *dataplane.Dataplane {
	t.Helper()
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// topology: client — node — server1, server2, server3 (each its own
// namespace, IPv4 and IPv6). The node forwards; clients reach the Service
// CIDRs through it. The node routes the ClusterIP ranges on to server1, which
// does not answer for them: a packet the node does not DNAT or reject
// vanishes (a timeout), so a refusal proves doorman's reject path.
type topology struct {
	client, node *testnet.NS
	servers      []*testnet.NS
}

const (
	nodeIP   = "10.0.1.1"
	nodeIP6  = "fd00:1::1"
	clientIP = "10.0.1.2"
)

func serverIP(i int) string  { return fmt.Sprintf("10.0.%d.2", i+2) }
func serverIP6(i int) string { return fmt.Sprintf("fd00:%d::2", i+2) }
func serverName(i int) string {
	return fmt.Sprintf("server%d", i+1)
}

func newTopology(t *testing.T, servers int) *topology {
	t.Helper()
	top := &topology{client: testnet.NewNS(t, "client"), node: testnet.NewNS(t, "node")}
	testnet.Link(t, top.client, []string{clientIP + "/24", "fd00:1::2/64"}, top.node, []string{nodeIP + "/24", nodeIP6 + "/64"})
	top.node.EnableForwarding(t)
	top.client.AddRoute(t, "10.96.0.0/16", nodeIP)
	top.client.AddRoute(t, "fd00:96::/64", nodeIP6)
	for i := 0; i < servers; i++ {
		s := testnet.NewNS(t, "server")
		gw, gw6 := fmt.Sprintf("10.0.%d.1", i+2), fmt.Sprintf("fd00:%d::1", i+2)
		testnet.Link(t, top.node, []string{gw + "/24", gw6 + "/64"}, s, []string{serverIP(i) + "/24", serverIP6(i) + "/64"})
		s.AddRoute(t, "default", gw)
		s.AddRoute(t, "default", gw6)
		s.TCPEcho(t, serverName(i), serverIP(i)+":8080")
		s.TCPEcho(t, serverName(i), "["+serverIP6(i)+"]:8080")
		top.servers = append(top.servers, s)
	}
	if servers > 0 {
		top.node.AddRoute(t, "10.96.0.0/16", serverIP(0))
		top.node.AddRoute(t, "fd00:96::/64", serverIP6(0))
	}
	return top
}

// answers dials addr n times from ns and counts answers per server name; it
// also returns the client addresses the servers saw (without ports).
func answers(t *testing.T, ns *testnet.NS, addr string, n int) (map[string]int, map[string]bool) {
	t.Helper()
	names, sources := map[string]int{}, map[string]bool{}
	for i := 0; i < n; i++ {
		got, err := ns.DialTCP(addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		name, src, ok := strings.Cut(got, " ")
		if !ok {
			t.Fatalf("answer %q: want \"<name> <addr>\"", got)
		}
		names[name]++
		host := src[:strings.LastIndex(src, ":")]
		sources[strings.Trim(host, "[]")] = true
	}
	return names, sources
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func webService(endpoints ...string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: tcp, Family: ipv4,
		ClusterIp: "10.96.0.10", Port: 80, NodePort: 30080}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, ep(ip, 8080))
	}
	return spEntry(sp)
}

func web6Service(endpoints ...string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: tcp, Family: ipv6,
		ClusterIp: "fd00:96::10", Port: 80, NodePort: 30080}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, ep(ip, 8080))
	}
	return spEntry(sp)
}

// TestTraffic programs a ClusterIP+NodePort Service with two endpoints (IPv4
// and IPv6), connects through the node, then moves one endpoint and shows
// traffic follows with a handful of kernel objects touched.
func TestTraffic(t *testing.T) {
	top := newTopology(t, 3)
	d := open(t, top.node)

	web := webService(serverIP(0), serverIP(1))
	web6 := web6Service(serverIP6(0), serverIP6(1))
	view := viewOf(nodeEntry(nodeIP, nodeIP6), web, web6)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}

	tests := []struct {
		name, addr  string
		wantSources []string
	}{
		// ClusterIP: DNAT only, the server sees the client itself.
		{"clusterIP", "10.96.0.10:80", []string{clientIP}},
		{"clusterIP6", "[fd00:96::10]:80", []string{"fd00:1::2"}},
		// NodePort: masqueraded to the node's address toward each server.
		{"nodePort", nodeIP + ":30080", []string{"10.0.2.1", "10.0.3.1"}},
		{"nodePort6", "[" + nodeIP6 + "]:30080", []string{"fd00:2::1", "fd00:3::1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			names, sources := answers(t, top.client, tc.addr, 20)
			if diff := cmp.Diff([]string{"server1", "server2"}, keys(names)); diff != "" {
				t.Errorf("servers that answered %v (-want +got):\n%s", names, diff)
			}
			if diff := cmp.Diff(tc.wantSources, keys(sources)); diff != "" {
				t.Errorf("client addresses the servers saw (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("move endpoint", func(t *testing.T) {
		moved := webService(serverIP(0), serverIP(2))
		stats, err := d.Apply([]dataplane.Change{{Key: web.GetKey(), Old: web, New: moved}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		// service-endpoints and nodeport-endpoints index 1 and the endpoint's
		// hairpin-pairs element: delete + add each.
		if stats.Ops != 6 {
			t.Errorf("Apply touched %d objects, want 6", stats.Ops)
		}
		for _, addr := range []string{"10.96.0.10:80", nodeIP + ":30080"} {
			names, _ := answers(t, top.client, addr, 20)
			if diff := cmp.Diff([]string{"server1", "server3"}, keys(names)); diff != "" {
				t.Errorf("%s: servers that answered %v (-want +got):\n%s", addr, names, diff)
			}
		}
		view[web.GetKey()] = moved
		stats, err = d.Sync(view)
		if err != nil {
			t.Fatalf("Sync after Apply: %v", err)
		}
		if stats.Ops != 0 {
			t.Errorf("Sync after Apply touched %d objects, want 0 (Apply left the kernel exact)", stats.Ops)
		}
	})

	t.Run("inspect", func(t *testing.T) {
		got, err := d.Inspect(true)
		if err != nil {
			t.Fatalf("Inspect: %v", err)
		}
		var elems []string
		for _, m := range got.GetMaps() {
			if m.GetName() == render.MapServiceEndpoints {
				elems = m.GetElements()
			}
		}
		want := []string{
			"10.96.0.10 . tcp . 80 . 0x00000000 : 10.0.2.2 . 8080",
			"10.96.0.10 . tcp . 80 . 0x00000001 : 10.0.4.2 . 8080",
		}
		if diff := cmp.Diff(want, elems); diff != "" {
			t.Errorf("service-endpoints elements (-want +got):\n%s", diff)
		}
	})
}

// TestRejects: a Service without endpoints and a port a ClusterIP does not
// have are refused at once (TCP reset), from a client and from the node
// itself, not left to time out.
func TestRejects(t *testing.T) {
	top := newTopology(t, 1)
	d := open(t, top.node)
	empty := spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "empty", Protocol: tcp, Family: ipv4,
		ClusterIp: "10.96.0.20", Port: 80})
	empty6 := spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "empty", Protocol: tcp, Family: ipv6,
		ClusterIp: "fd00:96::20", Port: 80})
	web := webService(serverIP(0))
	if _, err := d.Sync(viewOf(nodeEntry(nodeIP), web, empty, empty6)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	tests := []struct {
		name string
		from *testnet.NS
		addr string
	}{
		{"no endpoints", top.client, "10.96.0.20:80"},
		{"no endpoints ipv6", top.client, "[fd00:96::20]:80"},
		{"no endpoints from node", top.node, "10.96.0.20:80"},
		{"unknown port", top.client, "10.96.0.10:81"},
		{"unknown port from node", top.node, "10.96.0.10:81"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := tc.from.DialTCP(tc.addr, 3*time.Second)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial %s: err = %v, want connection refused", tc.addr, err)
			}
			// A refusal, not a timeout, is what tells a reject from a
			// drop; how long it took is the machine's, not doorman's.
			t.Logf("refused after %v", time.Since(start).Round(time.Millisecond))
		})
	}
	t.Run("known port still served", func(t *testing.T) {
		if _, err := top.client.DialTCP("10.96.0.10:80", 2*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("control: without doorman the packet vanishes", func(t *testing.T) {
		c, err := nftables.New(nftables.WithNetNSFd(top.node.FD()))
		if err != nil {
			t.Fatal(err)
		}
		c.DelTable(&nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		_, err = top.client.DialTCP("10.96.0.20:80", 1500*time.Millisecond)
		if !testnet.IsTimeout(err) {
			t.Errorf("dial without doorman: err = %v, want a timeout", err)
		}
	})
}

// TestSyncChangesOnlyWhatDiffers: a second Sync of the same view, by a new
// Dataplane as after an agent restart, touches nothing; a deleted element
// and a flushed chain (drift) are repaired with just those objects.
func TestSyncChangesOnlyWhatDiffers(t *testing.T) {
	node := testnet.NewNS(t, "node")
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2", "10.0.3.2"), web6Service("fd00:2::2"))
	first := open(t, node)
	stats, err := first.Sync(view)
	if err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	if stats.Ops == 0 {
		t.Fatal("first Sync touched nothing on an empty namespace")
	}
	if s := stats.Steps; s.Render <= 0 || s.Read <= 0 || s.Plan <= 0 || s.Encode <= 0 || s.Commit <= 0 {
		t.Errorf("first Sync's steps %+v: each took some time", s)
	}

	restarted := open(t, node)
	stats, err = restarted.Sync(view)
	if err != nil {
		t.Fatalf("Sync after restart: %v", err)
	}
	if stats.Ops != 0 {
		t.Errorf("Sync after restart touched %d objects, want 0", stats.Ops)
	}
	if s := stats.Steps; s.Encode != 0 || s.Commit != 0 {
		t.Errorf("Sync after restart: encode %s, commit %s, want none (nothing to send)", s.Encode, s.Commit)
	}

	// Drift: someone deletes an element and empties a chain.
	c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	objs, err := render.Entry(view[webService().GetKey()])
	if err != nil {
		t.Fatal(err)
	}
	var victim render.Element
	for _, e := range objs.Elements {
		if e.Set == render.MapServiceIPs {
			victim = e
		}
	}
	if err := c.SetDeleteElements(&nftables.Set{Table: table, Name: victim.Set},
		[]nftables.SetElement{{Key: victim.Key, VerdictData: victim.Verdict}}); err != nil {
		t.Fatal(err)
	}
	c.FlushChain(&nftables.Chain{Table: table, Name: render.ChainServices})
	if err := c.Flush(); err != nil {
		t.Fatalf("make drift: %v", err)
	}
	stats, err = restarted.Sync(view)
	if err != nil {
		t.Fatalf("Sync after drift: %v", err)
	}
	// 1 element + flush of services + its 4 rules.
	if stats.Ops != 6 {
		t.Errorf("Sync repairing drift touched %d objects, want 6", stats.Ops)
	}
	if stats, _ := restarted.Sync(view); stats.Ops != 0 {
		t.Errorf("Sync after repair touched %d objects, want 0", stats.Ops)
	}
}

// TestRetireChains: when no Service has K endpoints any more, the K chains
// stay through Apply and Sync (a restart after an endpoint-count change
// changes nothing in the kernel) and RetireUnused deletes them.
func TestRetireChains(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	two := webService("10.0.2.2", "10.0.3.2")
	one := webService("10.0.2.2")
	if _, err := d.Sync(viewOf(nodeEntry(nodeIP), two)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Apply([]dataplane.Change{{Key: two.GetKey(), Old: two, New: one}}); err != nil {
		t.Fatal(err)
	}
	if got := chainNames(t, d); !contains(got, "service-2") || !contains(got, "service-1") {
		t.Fatalf("chains after Apply = %v, want service-1 and service-2 both present", got)
	}
	before, err := d.Inspect(true)
	if err != nil {
		t.Fatal(err)
	}

	// A restart: a new dataplane's Sync of the same view changes nothing,
	// though service-2 and nodeport-2 are unused.
	restarted := open(t, node)
	stats, err := restarted.Sync(viewOf(nodeEntry(nodeIP), one))
	if err != nil {
		t.Fatal(err)
	}
	if stats.Ops != 0 {
		t.Errorf("Sync after a restart touched %d objects, want 0", stats.Ops)
	}
	after, err := restarted.Inspect(true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before.String(), after.String()); diff != "" {
		t.Errorf("restart changed the kernel (-before +after):\n%s", diff)
	}

	// A chain whose last reference just went may be busy for a moment; a
	// later RetireUnused deletes it. Chains in use stay.
	deadline := time.Now().Add(5 * time.Second)
	retired := 0
	for {
		n, err := restarted.RetireUnused()
		if err != nil {
			t.Fatalf("RetireUnused: %v", err)
		}
		retired += n
		got := chainNames(t, restarted)
		if !contains(got, "service-2") && !contains(got, "nodeport-2") {
			if !contains(got, "service-1") {
				t.Errorf("chains after RetireUnused = %v: service-1 is in use", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chains after RetireUnused = %v, want service-2 and nodeport-2 retired", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if retired < 2 {
		t.Errorf("RetireUnused reported %d chains, want at least service-2 and nodeport-2", retired)
	}
	if n, err := restarted.RetireUnused(); n != 0 || err != nil {
		t.Errorf("RetireUnused with nothing unused: %d, %v", n, err)
	}
	if stats, err := restarted.Sync(viewOf(nodeEntry(nodeIP), one)); err != nil || stats.Ops != 0 {
		t.Errorf("Sync after retiring: %d ops, %v; want 0", stats.Ops, err)
	}
	// Apply tracks the users too: back to two endpoints, service-1 and
	// nodeport-1 are unused and go, service-2 and nodeport-2 stay.
	if _, err := restarted.Apply([]dataplane.Change{{Key: one.GetKey(), Old: one, New: two}}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, err := restarted.RetireUnused(); err != nil {
			t.Fatalf("RetireUnused: %v", err)
		}
		got := chainNames(t, restarted)
		if !contains(got, "service-2") || !contains(got, "nodeport-2") {
			t.Fatalf("chains = %v: service-2 and nodeport-2 are in use", got)
		}
		if !contains(got, "service-1") && !contains(got, "nodeport-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chains after RetireUnused = %v, want service-1 and nodeport-1 retired", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func chainNames(t *testing.T, d *dataplane.Dataplane) []string {
	t.Helper()
	resp, err := d.Inspect(false)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range resp.GetChains() {
		out = append(out, c.GetName())
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestApplyBeforeSync: Apply needs a Sync first.
func TestApplyBeforeSync(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	if _, err := d.Apply(nil); !errors.Is(err, dataplane.ErrNotSynced) {
		t.Errorf("Apply before Sync: err = %v, want ErrNotSynced", err)
	}
}

// TestApplyFailureKeepsKernel: an Apply whose Old does not match the kernel
// fails as a whole and changes nothing; Sync heals.
func TestApplyFailureKeepsKernel(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	web := webService("10.0.2.2", "10.0.3.2")
	view := viewOf(nodeEntry(nodeIP), web)
	if _, err := d.Sync(view); err != nil {
		t.Fatal(err)
	}
	before, err := d.Inspect(true)
	if err != nil {
		t.Fatal(err)
	}
	ghost := spEntry(&doormanv1.ServicePort{Namespace: "x", Name: "ghost", Protocol: tcp, Family: ipv4, ClusterIp: "10.96.9.9", Port: 80,
		Endpoints: []*doormanv1.Endpoint{ep("10.0.9.9", 80)}})
	_, err = d.Apply([]dataplane.Change{
		{Key: web.GetKey(), Old: web, New: webService("10.0.2.2")},
		{Key: ghost.GetKey(), Old: ghost, New: nil}, // never programmed: its delete fails
	})
	if err == nil {
		t.Fatal("Apply with a wrong Old succeeded")
	}
	after, err := d.Inspect(true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before.String(), after.String()); diff != "" {
		t.Errorf("failed Apply changed the kernel (-before +after):\n%s", diff)
	}
}

// bigView has n ClusterIP Services with two endpoints each (and NodePorts
// for the first 2,000).
func bigView(n int) map[string]*doormanv1.Entry {
	view := make(map[string]*doormanv1.Entry, n+1)
	view[doormanv1.NodeKey] = nodeEntry(nodeIP)
	for i := 0; i < n; i++ {
		e := bigService(i, 0)
		view[e.GetKey()] = e
	}
	return view
}

// bigService is Service i; gen varies its second endpoint.
func bigService(i, gen int) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Protocol: tcp, Family: ipv4,
		ClusterIp: fmt.Sprintf("10.%d.%d.%d", 96+i>>16, (i>>8)&0xff, i&0xff), Port: 80,
		Endpoints: []*doormanv1.Endpoint{
			ep(fmt.Sprintf("10.%d.%d.%d", 128+i>>16, (i>>8)&0xff, i&0xff), 8080),
			ep(fmt.Sprintf("10.%d.%d.%d", 192+(i>>16), (i>>8)&0xff, gen&0xff), 8080),
		}}
	if i < 2000 {
		sp.NodePort = uint32(30000 + i)
	}
	return spEntry(sp)
}

// TestApplyCostIndependentOfSize: changing one endpoint of one Service
// touches as many kernel objects among 10 Services as among 1,000.
func TestApplyCostIndependentOfSize(t *testing.T) {
	ops := map[int]int{}
	for _, n := range []int{10, 1000} {
		node := testnet.NewNS(t, "node")
		d := open(t, node)
		if _, err := d.Sync(bigView(n)); err != nil {
			t.Fatalf("Sync %d: %v", n, err)
		}
		i := n / 2
		stats, err := d.Apply([]dataplane.Change{{Key: bigService(i, 0).GetKey(), Old: bigService(i, 0), New: bigService(i, 1)}})
		if err != nil {
			t.Fatalf("Apply at %d: %v", n, err)
		}
		ops[n] = stats.Ops
	}
	if ops[10] != ops[1000] || ops[10] == 0 {
		t.Errorf("Apply ops: %d at 10 Services, %d at 1,000; want equal and non-zero", ops[10], ops[1000])
	}
	t.Logf("one endpoint change: %d ops at 10 and at 1,000 Services", ops[10])
}

// BenchmarkApplyOneEndpoint measures one single-endpoint Apply at 1,000,
// 10,000 and 100,000 Services × 2 endpoints (one Sync per size sets up).
func BenchmarkApplyOneEndpoint(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			node := testnet.NewNS(b, "bench")
			d := open(b, node)
			view := bigView(n)
			start := time.Now()
			stats, err := d.Sync(view)
			if err != nil {
				b.Fatalf("Sync: %v", err)
			}
			b.Logf("Sync of %d Services: %v, %d ops", n, time.Since(start), stats.Ops)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				svc := (i * 7919) % n
				gen := i / n
				old, next := bigService(svc, gen), bigService(svc, gen+1)
				if _, err := d.Apply([]dataplane.Change{{Key: old.GetKey(), Old: old, New: next}}); err != nil {
					b.Fatalf("Apply: %v", err)
				}
			}
		})
	}
}

// TestSyncRebuildsForeignShape: a set the layout does not have (as left by
// another version) makes Sync replace the table atomically; the next Sync
// finds it right.
func TestSyncRebuildsForeignShape(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2"))
	if _, err := d.Sync(view); err != nil {
		t.Fatal(err)
	}
	c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	if err := c.AddSet(&nftables.Set{Table: table, Name: "stale", KeyType: nftables.TypeIPAddr}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync over a foreign set: %v", err)
	}
	sets, err := c.GetSets(table)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s.Name == "stale" {
			t.Errorf("set stale survived Sync")
		}
	}
	if len(sets) != len(render.Sets()) {
		t.Errorf("table has %d sets after Sync, want %d", len(sets), len(render.Sets()))
	}
	if stats, err := d.Sync(view); err != nil || stats.Ops != 0 {
		t.Errorf("Sync after rebuild: %d ops, err %v; want 0, nil", stats.Ops, err)
	}
}

// BenchmarkSyncUnchanged measures a Sync of the view the table already
// holds at 10,000 and 100,000 Services × 2 endpoints: read=skipped while
// the kernel is as the dataplane's own commits left it (the backstop
// resync, or a restart with the cache's mark: only the table's skeleton is
// read), read=full after an outside commit (to another table) before each
// Sync (a restart without a mark: read the whole table, compare, change
// nothing). cpu-s/op is the process's CPU time per Sync.
func BenchmarkSyncUnchanged(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		for _, full := range []bool{false, true} {
			name := fmt.Sprintf("services=%d/read=skipped", n)
			want := dataplane.ReadSkipped
			if full {
				name = fmt.Sprintf("services=%d/read=full", n)
				want = dataplane.ReadGenerationChanged
			}
			b.Run(name, func(b *testing.B) {
				node := testnet.NewNS(b, "bench")
				d := open(b, node)
				view := bigView(n)
				if _, err := d.Sync(view); err != nil {
					b.Fatalf("Sync: %v", err)
				}
				other, err := nftables.New(nftables.WithNetNSFd(node.FD()))
				if err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				var cpu time.Duration
				for i := 0; i < b.N; i++ {
					if full {
						b.StopTimer()
						other.AddTable(&nftables.Table{Name: fmt.Sprintf("other%d", i), Family: nftables.TableFamilyIPv4})
						if err := other.Flush(); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					before := processCPU(b)
					stats, err := d.Sync(view)
					cpu += processCPU(b) - before
					if err != nil {
						b.Fatalf("Sync: %v", err)
					}
					if stats.Ops != 0 || stats.Read != want {
						b.Fatalf("Sync of an unchanged view: %d ops, read %q; want 0 ops, read %q", stats.Ops, stats.Read, want)
					}
				}
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}

// processCPU is the CPU time (user and system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
