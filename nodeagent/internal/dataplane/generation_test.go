package dataplane_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/drift"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// programmed runs a first agent in node: Sync of the view, then an Apply
// moving web's endpoints, and returns the view the kernel then holds and
// the mark the cache would store with it, as bytes.
func programmed(t *testing.T, node *testnet.NS) (map[string]*doormanv1.Entry, []byte) {
	t.Helper()
	d, err := dataplane.Open(nil, dataplane.Options{NetNSPath: node.Path()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { _ = d.Close() }()
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2", "10.0.3.2"), web6Service("fd00:2::2"))
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	moved := webService("10.0.2.2", "10.0.4.2", "10.0.5.2")
	if _, err := d.Apply([]dataplane.Change{{Key: moved.GetKey(), Old: view[moved.GetKey()], New: moved}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	view[moved.GetKey()] = moved
	m := d.Mark()
	if m.IsZero() {
		t.Fatal("no mark after own commits with nobody else committing")
	}
	return view, m.Encode()
}

// restart opens a new dataplane in node and Syncs view with the mark a
// cache restored.
func restart(t *testing.T, node *testnet.NS, view map[string]*doormanv1.Entry, mark []byte) dataplane.Stats {
	t.Helper()
	d := open(t, node)
	d.Trust(dataplane.DecodeMark(mark))
	stats, err := d.Sync(view)
	if err != nil {
		t.Fatalf("Sync after restart: %v", err)
	}
	return stats
}

// expectHolds checks with a full read that the kernel holds view exactly.
func expectHolds(t *testing.T, node *testnet.NS, view map[string]*doormanv1.Entry) {
	t.Helper()
	stats := restart(t, node, view, nil)
	if stats.Read != dataplane.ReadNoRecord || stats.Ops != 0 {
		t.Errorf("full read after the restart: read %q, %d ops; want %q, 0 ops", stats.Read, stats.Ops, dataplane.ReadNoRecord)
	}
}

func outsideConn(t *testing.T, node *testnet.NS) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRestartReadsOnlyWhenChanged: a restart with the mark of the last own
// commit skips reading the table back only while nobody committed since;
// any outside commit, to doorman's table or another, makes it read and
// repair.
func TestRestartReadsOnlyWhenChanged(t *testing.T) {
	table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	for _, tc := range []struct {
		name     string
		outside  func(t *testing.T, c *nftables.Conn, view map[string]*doormanv1.Entry)
		noMark   bool
		wantRead dataplane.ReadCheck
		wantOps  int
	}{
		{name: "unchanged", wantRead: dataplane.ReadSkipped},
		{
			name: "element deleted from doorman's table",
			outside: func(t *testing.T, c *nftables.Conn, view map[string]*doormanv1.Entry) {
				objs, err := render.Entry(view[webService().GetKey()])
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range objs.Elements {
					if e.Set == render.MapServiceIPs {
						if err := c.SetDeleteElements(&nftables.Set{Table: table, Name: e.Set},
							[]nftables.SetElement{{Key: e.Key, VerdictData: e.Verdict}}); err != nil {
							t.Fatal(err)
						}
					}
				}
			},
			wantRead: dataplane.ReadGenerationChanged, wantOps: 1,
		},
		{
			name: "rule deleted from doorman's table",
			outside: func(t *testing.T, c *nftables.Conn, _ map[string]*doormanv1.Entry) {
				c.FlushChain(&nftables.Chain{Table: table, Name: render.ChainServices})
			},
			// The flush of services and its 4 rules.
			wantRead: dataplane.ReadGenerationChanged, wantOps: 5,
		},
		{
			name: "another table only",
			outside: func(t *testing.T, c *nftables.Conn, _ map[string]*doormanv1.Entry) {
				c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyIPv4})
			},
			wantRead: dataplane.ReadGenerationChanged,
		},
		{name: "cache without a mark", noMark: true, wantRead: dataplane.ReadNoRecord},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := testnet.NewNS(t, "node")
			view, mark := programmed(t, node)
			if tc.outside != nil {
				c := outsideConn(t, node)
				tc.outside(t, c, view)
				if err := c.Flush(); err != nil {
					t.Fatalf("outside change: %v", err)
				}
			}
			if tc.noMark {
				mark = nil
			}
			stats := restart(t, node, view, mark)
			if stats.Read != tc.wantRead || stats.Ops != tc.wantOps {
				t.Errorf("Sync after restart: read %q, %d ops; want %q, %d ops", stats.Read, stats.Ops, tc.wantRead, tc.wantOps)
			}
			expectHolds(t, node, view)
		})
	}
}

// TestRestartWithAnotherView: a mark describes the elements the kernel
// holds, not the view: a cache whose view renders otherwise (an older
// write, other options) reads the table and repairs it.
func TestRestartWithAnotherView(t *testing.T) {
	node := testnet.NewNS(t, "node")
	view, mark := programmed(t, node)
	older := viewOf(nodeEntry(nodeIP), webService("10.0.2.2", "10.0.3.2"), web6Service("fd00:2::2"))
	stats := restart(t, node, older, mark)
	if stats.Read != dataplane.ReadViewChanged || stats.Ops == 0 {
		t.Errorf("Sync of another view: read %q, %d ops; want %q and a repair", stats.Read, stats.Ops, dataplane.ReadViewChanged)
	}
	expectHolds(t, node, older)
	stats = restart(t, node, view, mark)
	if stats.Read == dataplane.ReadSkipped {
		t.Errorf("Sync with a mark from before the last commit skipped the read")
	}
	expectHolds(t, node, view)
}

// TestRestartWithContestedFrontend: a view in which an externalIP claims
// another Service's ClusterIP (which the start-up cannot summarize: what
// it keeps depends on every claim) is rendered whole, still skips the
// read when nothing changed, and still refuses the claim.
func TestRestartWithContestedFrontend(t *testing.T) {
	node := testnet.NewNS(t, "node")
	evil := spEntry(&doormanv1.ServicePort{Namespace: "aaa", Name: "evil", Protocol: tcp, Family: ipv4,
		ClusterIp: "10.96.0.99", Port: 80, ExternalIps: []string{"10.96.0.10"}, Endpoints: []*doormanv1.Endpoint{ep("10.0.4.2", 8080)}})
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2", "10.0.3.2"), evil)
	sync := func(d *dataplane.Dataplane) dataplane.Stats {
		t.Helper()
		stats, err := d.Sync(view)
		var invalid *dataplane.InvalidEntriesError
		if !errors.As(err, &invalid) || len(invalid.Entries) != 1 || invalid.Entries[evil.GetKey()] == nil {
			t.Fatalf("Sync: %v; want %s refused", err, evil.GetKey())
		}
		return stats
	}
	d := open(t, node)
	sync(d)
	mark := d.Mark()
	if mark.IsZero() {
		t.Fatal("no mark after the first Sync")
	}
	d2 := open(t, node)
	d2.Trust(mark)
	if stats := sync(d2); stats.Read != dataplane.ReadSkipped || stats.Ops != 0 {
		t.Errorf("Sync after restart: read %q, %d ops; want %q, 0 ops", stats.Read, stats.Ops, dataplane.ReadSkipped)
	}
	d3 := open(t, node)
	if stats := sync(d3); stats.Read != dataplane.ReadNoRecord || stats.Ops != 0 {
		t.Errorf("full read after the restart: read %q, %d ops; want %q, 0 ops", stats.Read, stats.Ops, dataplane.ReadNoRecord)
	}
}

// TestResyncReadsOnlyWhenChanged: the backstop Sync of a running
// dataplane skips the read while the kernel is as its own commits left it,
// and reads after any outside commit.
func TestResyncReadsOnlyWhenChanged(t *testing.T) {
	node := testnet.NewNS(t, "node")
	d := open(t, node)
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2"))
	if stats, err := d.Sync(view); err != nil || stats.Read != dataplane.ReadNoRecord {
		t.Fatalf("first Sync: read %q, error %v; want %q", stats.Read, err, dataplane.ReadNoRecord)
	}
	sync := func(want dataplane.ReadCheck, wantOps int) {
		t.Helper()
		stats, err := d.Sync(view)
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if stats.Read != want || stats.Ops != wantOps {
			t.Errorf("Sync: read %q, %d ops; want %q, %d ops", stats.Read, stats.Ops, want, wantOps)
		}
	}
	sync(dataplane.ReadSkipped, 0)
	if !d.Unchanged() {
		t.Error("Unchanged false while nobody committed")
	}

	c := outsideConn(t, node)
	c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyIPv4})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if d.Unchanged() {
		t.Error("Unchanged true after a commit to another table")
	}
	sync(dataplane.ReadGenerationChanged, 0)
	sync(dataplane.ReadSkipped, 0)

	moved := webService("10.0.3.2")
	if _, err := d.Apply([]dataplane.Change{{Key: moved.GetKey(), Old: view[moved.GetKey()], New: moved}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	view[moved.GetKey()] = moved
	if !d.Unchanged() {
		t.Error("Unchanged false after an own Apply")
	}
	sync(dataplane.ReadSkipped, 0)

	c.FlushChain(&nftables.Chain{Table: &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}, Name: render.ChainServices})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	sync(dataplane.ReadGenerationChanged, 5)
	sync(dataplane.ReadSkipped, 0)
}

// BenchmarkResyncAfterOtherTable measures the backstop resync of an agent
// holding 100,000 Services × 2 endpoints after someone committed to
// another table: with the drift monitor as the dataplane's witness
// (Unchanged: nothing to do) and without (a Sync that reads the table
// back, quadratic in the kernel's set dumps). cpu-s/op is the process's
// CPU time per resync.
func BenchmarkResyncAfterOtherTable(b *testing.B) {
	const n = 100000
	view := bigView(n)
	for _, witness := range []bool{true, false} {
		name := "witness"
		if !witness {
			name = "none"
		}
		b.Run(name, func(b *testing.B) {
			node := testnet.NewNS(b, "resync")
			m, err := drift.Open(nil, node.Path())
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = m.Close() }()
			d := open(b, node)
			if witness {
				d.SetWitness(m)
			}
			k := m.Kernel(d)
			if _, err := k.Sync(view); err != nil {
				b.Fatal(err)
			}
			c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				c.AddTable(&nftables.Table{Name: fmt.Sprintf("cni-%d", i), Family: nftables.TableFamilyIPv4})
				if err := c.Flush(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				before := processCPU(b)
				if !agent.Unchanged(k) {
					if stats, err := k.Sync(view); err != nil || stats.Ops != 0 {
						b.Fatalf("resync: %d ops, %v; want 0 ops", stats.Ops, err)
					}
				} else if !witness {
					b.Fatal("Unchanged without a witness after a commit to another table")
				}
				cpu += processCPU(b) - before
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}
