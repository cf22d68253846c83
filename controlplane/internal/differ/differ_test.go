package differ

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/view"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func port(svc string, eps ...string) *doormanv1.ServicePort {
	sp := &doormanv1.ServicePort{Namespace: "ns", Name: svc, Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.1", Port: 80}
	for _, e := range eps {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: e, Port: 8080})
	}
	return sp
}

func key(svc string) string { return doormanv1.ServicePortKey(port(svc)) }

// agent is what a node agent keeps: its entries and their digests.
type agent struct {
	entries map[string]*doormanv1.Entry
}

func newAgent() *agent { return &agent{entries: map[string]*doormanv1.Entry{}} }

// apply applies an update as the protocol says, through its wire encoding,
// and returns the ack the agent would send.
func (a *agent) apply(t *testing.T, u *wire.Update) *doormanv1.Ack {
	t.Helper()
	r := &doormanv1.SyncResponse{}
	if err := proto.Unmarshal(u.Frame().Bytes, r); err != nil {
		t.Fatal(err)
	}
	if r.GetFull() {
		clear(a.entries)
	}
	for _, b := range r.GetReplacedBuckets() {
		for k := range a.entries {
			if doormanv1.Bucket(k) == b {
				delete(a.entries, k)
			}
		}
	}
	for _, e := range r.GetUpserts() {
		a.entries[e.GetKey()] = e
	}
	for _, k := range r.GetRemovals() {
		delete(a.entries, k)
	}
	if got := a.digests().View(); got != r.GetViewDigest() {
		t.Errorf("after version %d the agent's view digest is %x, the update says %x", r.GetVersion(), got, r.GetViewDigest())
	}
	return &doormanv1.Ack{Version: r.GetVersion(), ViewDigest: a.digests().View()}
}

func (a *agent) digests() *doormanv1.Digests {
	d := &doormanv1.Digests{}
	for k, e := range a.entries {
		d.Toggle(k, e.GetDigest())
	}
	return d
}

func (a *agent) hello(node string) *doormanv1.Hello {
	h := &doormanv1.Hello{NodeName: node}
	if len(a.entries) > 0 {
		d := a.digests()
		h.Holding = &doormanv1.Holding{Version: 1, ViewDigest: d.View(), BucketDigests: d.BucketList()}
	}
	return h
}

// matches checks the agent holds exactly the node's current view.
func (a *agent) matches(t *testing.T, v *view.View, node string) {
	t.Helper()
	want, err := v.Entries(node)
	if err != nil {
		t.Fatal(err)
	}
	var wantKeys, gotKeys []string
	for _, e := range want {
		wantKeys = append(wantKeys, fmt.Sprintf("%s %x", e.Key, e.Digest))
	}
	for k, e := range a.entries {
		gotKeys = append(gotKeys, fmt.Sprintf("%s %x", k, e.GetDigest()))
	}
	slices.Sort(gotKeys)
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("agent of %s holds (-want +got):\n%s", node, diff)
	}
}

type fixture struct {
	t *testing.T
	v *view.View
	d *Differ
}

func newFixture(t *testing.T, logLimit int, services int) *fixture {
	f := &fixture{t: t, v: view.New(1000, logLimit)}
	f.d = New(f.v)
	for i := range services {
		f.set(fmt.Sprintf("s%d", i), fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))
	}
	return f
}

func (f *fixture) set(svc string, eps ...string) {
	f.t.Helper()
	if _, err := f.v.SetService("ns/"+svc, map[string]model.Value{key(svc): {Default: port(svc, eps...)}}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) node(name string) {
	f.t.Helper()
	if _, err := f.v.SetNode(name, &doormanv1.Node{Name: name}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) hello(a *agent, node string) Token {
	f.t.Helper()
	tok, err := f.d.Hello(a.hello(node))
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fixture) next(tok Token) *wire.Update {
	f.t.Helper()
	u, err := f.d.Next(tok)
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

// sync sends and acks until nothing is left.
func (f *fixture) sync(tok Token, a *agent) {
	f.t.Helper()
	for u := f.next(tok); u != nil; u = f.next(tok) {
		if err := f.d.Ack(tok, a.apply(f.t, u)); err != nil {
			f.t.Fatal(err)
		}
	}
}

func keysOf(u *wire.Update) []string {
	var out []string
	for _, e := range u.Upserts {
		out = append(out, e.Key)
	}
	return out
}

func TestResume(t *testing.T) {
	f := newFixture(t, 0, 50)
	f.node("n1")
	synced := newAgent()
	f.sync(f.hello(synced, "n1"), synced)
	synced.matches(t, f.v, "n1")

	corrupt := func(k string) *agent {
		a := newAgent()
		for kk, e := range synced.entries {
			a.entries[kk] = e
		}
		e := proto.Clone(a.entries[k]).(*doormanv1.Entry)
		e.Digest++
		a.entries[k] = e
		return a
	}
	missing := newAgent()
	for k, e := range synced.entries {
		if k != key("s7") {
			missing.entries[k] = e
		}
	}
	extra := newAgent()
	for k, e := range synced.entries {
		extra.entries[k] = e
	}
	extra.entries["ns/gone:80/tcp/ipv4"] = &doormanv1.Entry{Key: "ns/gone:80/tcp/ipv4", Digest: 5}

	for _, tt := range []struct {
		name     string
		agent    *agent
		full     bool
		replaced []uint32
		upserts  int // -1: every entry of the replaced buckets
	}{
		{name: "holding nothing: full view", agent: newAgent(), full: true, upserts: 51},
		{name: "matching digests: empty update", agent: synced, upserts: 0},
		{name: "one entry wrong: only its bucket", agent: corrupt(key("s3")), replaced: []uint32{doormanv1.Bucket(key("s3"))}, upserts: -1},
		{name: "one entry missing: only its bucket", agent: missing, replaced: []uint32{doormanv1.Bucket(key("s7"))}, upserts: -1},
		{name: "one entry too many: only its bucket", agent: extra, replaced: []uint32{doormanv1.Bucket("ns/gone:80/tcp/ipv4")}, upserts: -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := newAgent()
			for k, e := range tt.agent.entries {
				a.entries[k] = e
			}
			tok := f.hello(a, "n1")
			u := f.next(tok)
			if u == nil {
				t.Fatal("no update after hello")
			}
			if u.Version != f.v.Version() || u.Full != tt.full {
				t.Errorf("version %d full %v, want %d %v", u.Version, u.Full, f.v.Version(), tt.full)
			}
			if diff := cmp.Diff(tt.replaced, u.ReplacedBuckets); diff != "" {
				t.Errorf("replaced buckets (-want +got):\n%s", diff)
			}
			want := tt.upserts
			if want == -1 {
				want = 0
				for _, b := range tt.replaced {
					want += len(f.v.BucketEntries("n1", b))
				}
			}
			got := len(u.Upserts)
			if u.Shared != nil {
				got += u.Shared.Entries
			}
			if got != want {
				t.Errorf("%d upserts, want %d", got, want)
			}
			if err := f.d.Ack(tok, a.apply(t, u)); err != nil {
				t.Fatal(err)
			}
			a.matches(t, f.v, "n1")
			if u := f.next(tok); u != nil {
				t.Errorf("a second update without a change: %+v", u)
			}
		})
	}
}

func TestInFlightCoalescingAndNack(t *testing.T) {
	f := newFixture(t, 0, 3)
	f.node("n1")
	a := newAgent()
	tok := f.hello(a, "n1")
	first := f.next(tok)
	if f.next(tok) != nil {
		t.Fatal("second update while one is in flight")
	}
	f.set("s0", "10.9.0.1")
	f.set("s1", "10.9.0.2")
	f.set("s0", "10.9.0.3")
	if f.next(tok) != nil {
		t.Fatal("update sent while one is in flight")
	}
	if st := f.d.NodeStatus("n1"); st.InFlight != first.Version || !st.Connected {
		t.Errorf("status %+v, want in flight %d", st, first.Version)
	}
	if err := f.d.Ack(tok, a.apply(t, first)); err != nil {
		t.Fatal(err)
	}
	u := f.next(tok)
	if diff := cmp.Diff([]string{key("s0"), key("s1")}, keysOf(u)); diff != "" {
		t.Errorf("coalesced upserts (-want +got):\n%s", diff)
	}
	if got := u.Upserts[0].Bytes; string(got) != string(f.v.Lookup("n1", key("s0")).Bytes) {
		t.Error("coalesced update does not carry the latest value")
	}
	if err := f.d.Nack(tok, &doormanv1.Nack{Version: u.Version, Error: "kernel said no"}); err != nil {
		t.Fatal(err)
	}
	if again := f.next(tok); again != nil {
		t.Fatalf("resent after nack: %v", keysOf(again))
	}
	st := f.d.NodeStatus("n1")
	if st.LastNack != "kernel said no" || st.LastNackVersion != u.Version || st.Acked != first.Version || st.InFlight != 0 {
		t.Errorf("status after nack %+v", st)
	}
	// The next change carries what the nacked update carried too.
	f.set("s2")
	if _, err := f.v.SetService("ns/s1", nil); err != nil {
		t.Fatal(err)
	}
	heal := f.next(tok)
	if diff := cmp.Diff([]string{key("s0"), key("s2")}, keysOf(heal)); diff != "" {
		t.Errorf("healing upserts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{key("s1")}, heal.Removals); diff != "" {
		t.Errorf("healing removals (-want +got):\n%s", diff)
	}
	if err := f.d.Ack(tok, a.apply(t, heal)); err != nil {
		t.Fatal(err)
	}
	a.matches(t, f.v, "n1")
	if st := f.d.NodeStatus("n1"); st.Acked != heal.Version || st.Lag() != 0 {
		t.Errorf("status after heal %+v", st)
	}
}

func TestProtocolErrors(t *testing.T) {
	f := newFixture(t, 0, 1)
	a := newAgent()
	if _, err := f.d.Hello(&doormanv1.Hello{}); err == nil {
		t.Error("hello without node name accepted")
	}
	if _, err := f.d.Hello(&doormanv1.Hello{NodeName: "n1", Holding: &doormanv1.Holding{BucketDigests: []uint64{1}}}); err == nil {
		t.Error("hello with one bucket digest accepted")
	}
	tok := f.hello(a, "n1")
	if err := f.d.Ack(tok, &doormanv1.Ack{Version: 5}); err == nil {
		t.Error("ack with nothing in flight accepted")
	}
	u := f.next(tok)
	if err := f.d.Nack(tok, &doormanv1.Nack{Version: u.Version + 1}); err == nil {
		t.Error("nack of another version accepted")
	}
	newer := f.hello(newAgent(), "n1")
	if _, err := f.d.Next(tok); err == nil {
		t.Error("replaced session still served")
	}
	f.d.Close(tok) // stale: must not end the newer session
	if _, err := f.d.Next(newer); err != nil {
		t.Errorf("newer session: %v", err)
	}
}

func TestAckWithWrongDigestResyncsFully(t *testing.T) {
	f := newFixture(t, 0, 3)
	f.node("n1")
	a := newAgent()
	tok := f.hello(a, "n1")
	u := f.next(tok)
	ack := a.apply(t, u)
	ack.ViewDigest++
	if err := f.d.Ack(tok, ack); err != nil {
		t.Fatal(err)
	}
	if st := f.d.NodeStatus("n1"); st.LastNack == "" {
		t.Error("digest mismatch not recorded")
	}
	f.set("s0", "10.9.9.9")
	if u := f.next(tok); !u.Full {
		t.Error("update after a mismatched ack is not a full view")
	}
}

func TestPerNodeVariants(t *testing.T) {
	f := newFixture(t, 0, 2)
	agents := map[string]*agent{}
	toks := map[string]Token{}
	for _, n := range []string{"n1", "n2", "n3"} {
		f.node(n)
		agents[n] = newAgent()
		toks[n] = f.hello(agents[n], n)
		f.sync(toks[n], agents[n])
	}
	local := func(byNode map[string][]string) {
		val := model.Value{Default: port("l"), ByNode: map[string]*doormanv1.ServicePort{}}
		for n, eps := range byNode {
			val.ByNode[n] = port("l", eps...)
		}
		if _, err := f.v.SetService("ns/l", map[string]model.Value{key("l"): val}); err != nil {
			t.Fatal(err)
		}
	}
	local(map[string][]string{"n1": {"10.5.0.1"}})
	for _, n := range []string{"n1", "n2", "n3"} {
		f.sync(toks[n], agents[n])
	}
	// Only n1's endpoints move: n2 and n3 get nothing.
	local(map[string][]string{"n1": {"10.5.0.2"}})
	if u := f.next(toks["n2"]); u != nil {
		t.Errorf("n2 got an update for n1's change: %v", keysOf(u))
	}
	u := f.next(toks["n1"])
	if diff := cmp.Diff([]string{key("l")}, keysOf(u)); diff != "" {
		t.Errorf("n1 upserts (-want +got):\n%s", diff)
	}
	if err := f.d.Ack(toks["n1"], agents["n1"].apply(t, u)); err != nil {
		t.Fatal(err)
	}
	// n2 and n3 share the default: one encoding.
	if f.v.Lookup("n2", key("l")) != f.v.Lookup("n3", key("l")) {
		t.Error("nodes without local endpoints do not share the default value")
	}
	for n, a := range agents {
		a.matches(t, f.v, n)
	}
}

func TestTruncatedLogResyncsByBuckets(t *testing.T) {
	f := newFixture(t, 8, 40)
	f.node("n1")
	a := newAgent()
	tok := f.hello(a, "n1")
	f.sync(tok, a)
	u := func() *wire.Update {
		f.set("s1", "10.7.0.1")
		return f.next(tok)
	}()
	// n1 does not ack while many changes go by.
	for i := range 30 {
		f.set(fmt.Sprintf("s%d", i%5+2), fmt.Sprintf("10.8.0.%d", i+1))
	}
	if err := f.d.Ack(tok, a.apply(t, u)); err != nil {
		t.Fatal(err)
	}
	next := f.next(tok)
	if len(next.ReplacedBuckets) == 0 || next.Full {
		t.Fatalf("after truncation: full=%v replaced=%v, want a bucket resync", next.Full, next.ReplacedBuckets)
	}
	if len(next.ReplacedBuckets) > 5 {
		t.Errorf("replaced %d buckets, at most 5 keys changed", len(next.ReplacedBuckets))
	}
	if err := f.d.Ack(tok, a.apply(t, next)); err != nil {
		t.Fatal(err)
	}
	a.matches(t, f.v, "n1")
}

// One change fanned out to 100 nodes marshals its entry once, and every
// node's update carries the same encoding.
func TestOneMarshalPerChange(t *testing.T) {
	f := newFixture(t, 0, 20)
	var toks []Token
	var agents []*agent
	for i := range 100 {
		n := fmt.Sprintf("node-%03d", i)
		f.node(n)
		a := newAgent()
		tok := f.hello(a, n)
		f.sync(tok, a)
		toks, agents = append(toks, tok), append(agents, a)
	}
	before := f.v.Stats().Marshals
	f.set("s3", "10.6.0.1", "10.6.0.2")
	var shared *wire.Entry
	for i, tok := range toks {
		u := f.next(tok)
		if len(u.Upserts) != 1 {
			t.Fatalf("node %d: %d upserts", i, len(u.Upserts))
		}
		if shared == nil {
			shared = u.Upserts[0]
		} else if u.Upserts[0] != shared {
			t.Fatalf("node %d got another encoding of the entry", i)
		}
		if err := f.d.Ack(tok, agents[i].apply(t, u)); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.v.Stats().Marshals - before; got != 1 {
		t.Errorf("%d entry marshals for one change to 100 nodes, want 1", got)
	}
}

// What a connected, synced node costs on top of the shared state, at
// 10,000 Services.
func TestMemoryPerNode(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	f := newFixture(t, 0, 10000)
	const nodes = 50
	for i := range nodes {
		f.node(fmt.Sprintf("node-%03d", i))
	}
	// One node first so lazily built shared state is not counted.
	warm := newAgent()
	f.sync(f.hello(warm, "node-000"), warm)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 1; i < nodes; i++ {
		tok, err := f.d.Hello(&doormanv1.Hello{NodeName: fmt.Sprintf("node-%03d", i)})
		if err != nil {
			t.Fatal(err)
		}
		u := f.next(tok)
		// Ack as an agent holding exactly that view would.
		if err := f.d.Ack(tok, &doormanv1.Ack{Version: u.Version, ViewDigest: u.ViewDigest}); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / (nodes - 1)
	t.Logf("heap per connected node at 10,000 Services: %d bytes", per)
	if per > 64<<10 {
		t.Errorf("%d bytes per node, budget 64 KiB", per)
	}
	runtime.KeepAlive(warm)
	runtime.KeepAlive(f)
}

func TestAckReportsUnprogrammedKeys(t *testing.T) {
	f := newFixture(t, 0, 2)
	f.node("n1")
	a := newAgent()
	tok := f.hello(a, "n1")
	ack := a.apply(t, f.next(tok))
	ack.NotProgrammed = []string{key("s1")}
	if err := f.d.Ack(tok, ack); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{key("s1")}, f.d.NodeStatus("n1").NotProgrammed); diff != "" {
		t.Errorf("NotProgrammed after an ack naming s1 (-want +got):\n%s", diff)
	}
	f.set("s0", "10.9.9.9")
	if err := f.d.Ack(tok, a.apply(t, f.next(tok))); err != nil {
		t.Fatal(err)
	}
	if got := f.d.NodeStatus("n1").NotProgrammed; len(got) != 0 {
		t.Errorf("NotProgrammed after a clean ack = %v, want none", got)
	}
}

// What a node sends about its refusals is kept bounded, however much it
// sends: a NACK's error and the not-programmed list of an Ack.
func TestNodeTextsBounded(t *testing.T) {
	f := newFixture(t, 0, 3)
	f.node("n1")
	a := newAgent()
	tok := f.hello(a, "n1")
	u := f.next(tok)
	if err := f.d.Nack(tok, &doormanv1.Nack{Version: u.Version, Error: strings.Repeat("no ", 1<<20)}); err != nil {
		t.Fatal(err)
	}
	if st := f.d.NodeStatus("n1"); len(st.LastNack) > doormanv1.MaxNackText {
		t.Errorf("last NACK kept %d bytes, want at most %d", len(st.LastNack), doormanv1.MaxNackText)
	}
	f.set("s0", "10.9.0.9")
	u = f.next(tok)
	ack := a.apply(t, u)
	for range 10 * doormanv1.MaxTexts {
		ack.NotProgrammed = append(ack.NotProgrammed, strings.Repeat("k", 5*doormanv1.MaxText))
	}
	if err := f.d.Ack(tok, ack); err != nil {
		t.Fatal(err)
	}
	st := f.d.NodeStatus("n1")
	if len(st.NotProgrammed) != doormanv1.MaxTexts+1 {
		t.Fatalf("%d not-programmed items kept, want %d and a count of the rest", len(st.NotProgrammed), doormanv1.MaxTexts+1)
	}
	for _, s := range st.NotProgrammed {
		if len(s) > doormanv1.MaxText {
			t.Fatalf("a not-programmed item of %d bytes, want at most %d", len(s), doormanv1.MaxText)
		}
	}
}
