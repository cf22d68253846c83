package app

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/testnet"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// getState asks the agent's Inspect service what it holds.
func (r *agentRun) getState(t *testing.T) *doormanv1.GetStateResponse {
	t.Helper()
	conn, err := grpc.NewClient(r.inspect, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := doormanv1.NewAgentInspectServiceClient(conn).GetState(ctx, &doormanv1.GetStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// programmedAgent starts an agent in a fresh namespace and has it program
// one full view.
func programmedAgent(t *testing.T) (*testnet.NS, *agentRun, *controlPlane) {
	t.Helper()
	ns := testnet.NewNS(t, "agent")
	run, cp := programmedAgentIn(t, ns, "")
	return ns, run, cp
}

// programmedAgentIn starts an agent in ns, with the cache at cachePath
// ("" = none), and has it program one full view.
func programmedAgentIn(t *testing.T, ns *testnet.NS, cachePath string) (*agentRun, *controlPlane) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	run := startAgent(t, ns, cachePath, lis.Addr().String())
	receive(t, cp.hellos, "hello")
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1\nlogs:\n%s", r, run.logs.String())
	}
	return run, cp
}

// changedView is entries with the web Service's second endpoint moved to
// another address (the endpoint count stays, so no per-K chain is left
// unused).
func changedView(t *testing.T, endpoint string, trigger int64) []*doormanv1.Entry {
	view := entries(t)
	sp := view[0].GetServicePort()
	sp.Endpoints[1].Ip = endpoint
	sp.TriggerTimeUnixNano = trigger
	view[0].Digest, _ = doormanv1.ValueDigest(sp)
	return view
}

// repairedOnEvent matches the log of a repair the event monitor asked for.
var repairedOnEvent = regexp.MustCompile(`kernel drift repaired: .*trigger="foreign change"`)

// TestDriftRepaired: doorman's table is changed from outside the agent, by
// a separate netlink connection in the node's namespace; the agent notices
// and puts it back, on the monitor's word, counting each repair. Its own
// updates are not drift.
func TestDriftRepaired(t *testing.T) {
	ns, run, cp := programmedAgent(t)

	// An update of the agent's own: applied, no resync, no repair.
	view := changedView(t, "10.244.3.2", 0)
	cp.updates <- &doormanv1.SyncResponse{Version: 2, Upserts: view[:1], ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 2 {
		t.Fatalf("reply %v, want an ack of version 2", r)
	}
	time.Sleep(500 * time.Millisecond) // well past the debounce
	if s := run.getState(t); s.GetFullSyncs() != 1 || s.GetDriftRepairs() != 0 {
		t.Fatalf("after an own update: full syncs %d, drift repairs %d; want 1, 0\nlogs:\n%s", s.GetFullSyncs(), s.GetDriftRepairs(), run.logs.String())
	}
	programmed := kernelTable(t, ns)

	table := &nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet}
	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name   string
		change func(t *testing.T, c *nftables.Conn)
	}{
		{"one element deleted", func(t *testing.T, c *nftables.Conn) {
			set, err := c.GetSetByName(table, "service-endpoints")
			if err != nil {
				t.Fatal(err)
			}
			elems, err := c.GetSetElements(set)
			if err != nil || len(elems) == 0 {
				t.Fatalf("elements of %s: %v, %v", set.Name, elems, err)
			}
			if err := c.SetDeleteElements(set, elems[:1]); err != nil {
				t.Fatal(err)
			}
		}},
		{"a chain's rules flushed", func(t *testing.T, c *nftables.Conn) {
			c.FlushChain(&nftables.Chain{Name: "services", Table: table})
		}},
		{"the table deleted", func(t *testing.T, c *nftables.Conn) {
			c.DelTable(table)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(t, other)
			if err := other.Flush(); err != nil {
				t.Fatal(err)
			}
			changed := time.Now()
			if diff := cmp.Diff(programmed, kernelTable(t, ns), protocmp.Transform()); diff == "" {
				t.Fatal("the change did not change the kernel")
			}
			// Repaired on the monitor's word: the periodic resync is
			// minutes away, and the log names the trigger.
			want := uint64(i + 1)
			for run.getState(t).GetDriftRepairs() < want || len(repairedOnEvent.FindAllString(run.logs.String(), -1)) < int(want) {
				if time.Since(changed) > 30*time.Second {
					t.Fatalf("not repaired on a foreign change within 30s: state %v\nlogs:\n%s", run.getState(t), run.logs.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Logf("repaired in %v", time.Since(changed).Round(time.Millisecond))
			if diff := cmp.Diff(programmed, kernelTable(t, ns), protocmp.Transform()); diff != "" {
				t.Errorf("kernel after the repair (-want +got):\n%s", diff)
			}
			if got := run.getState(t).GetDriftRepairs(); got != want {
				t.Errorf("drift repairs %d, want %d", got, want)
			}
		})
	}
}

// TestResyncAfterOtherTables: commits by others to other tables (a CNI, a
// firewall) leave doorman's table alone, and the drift monitor sees that:
// the periodic resyncs after them read nothing back. A commit to
// doorman's table still makes the next Sync read and repair.
func TestResyncAfterOtherTables(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	const period = 100 * time.Millisecond
	run := startAgentWith(t, ns, "", func(c *Config) {
		c.ControlPlanes = []string{lis.Addr().String()}
		c.ResyncPeriod = period
	})
	receive(t, cp.hellos, "hello")
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1\nlogs:\n%s", r, run.logs.String())
	}
	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	reads := func() map[string]float64 { return run.scrapeLabelled(t, "doorman_agent_sync_reads_total") }
	before := reads()
	for i := range 5 {
		other.AddTable(&nftables.Table{Name: fmt.Sprintf("cni-%d", i), Family: nftables.TableFamilyIPv4})
		other.AddChain(&nftables.Chain{Name: "forward", Table: &nftables.Table{Name: fmt.Sprintf("cni-%d", i), Family: nftables.TableFamilyIPv4}})
		if err := other.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * period)
	}
	// At least five periodic resyncs after the commits, however slowly
	// the machine runs them.
	after := reads()
	deadline := time.Now().Add(30 * time.Second)
	for after[`reason="generation_unchanged"`]-before[`reason="generation_unchanged"`] < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 5 periodic resyncs that read nothing within 30s: %v → %v\nlogs:\n%s", before, after, run.logs.String())
		}
		time.Sleep(period)
		after = reads()
	}
	for reason, n := range after {
		if reason != `reason="generation_unchanged"` && n != before[reason] {
			t.Errorf("Syncs that read the table back after commits to other tables only: %s went from %v to %v\nlogs:\n%s", reason, before[reason], n, run.logs.String())
		}
	}

	other.FlushChain(&nftables.Chain{Name: "services", Table: &nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet}})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for reads()[`reason="generation_changed"`] == after[`reason="generation_changed"`] {
		if time.Now().After(deadline) {
			t.Fatalf("no Sync read the table back within 30s of a commit to doorman's table\nlogs:\n%s", run.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
