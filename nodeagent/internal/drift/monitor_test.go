package drift

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func view(t *testing.T) map[string]*doormanv1.Entry { return bigView(t, 1) }

// bigView has n ClusterIP Services with one endpoint each.
func bigView(t *testing.T, n int) map[string]*doormanv1.Entry {
	t.Helper()
	out := make(map[string]*doormanv1.Entry, n)
	for i := range n {
		sp := &doormanv1.ServicePort{
			Namespace: "default", Name: "web", PortName: "http",
			Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
			ClusterIp: fmt.Sprintf("10.96.%d.%d", i/200, i%200+10), Port: 80,
			Endpoints: []*doormanv1.Endpoint{{Ip: "10.244.1.2", Port: 8080}},
		}
		if i > 0 {
			sp.Name = fmt.Sprintf("web-%d", i)
		}
		d, err := doormanv1.ValueDigest(sp)
		if err != nil {
			t.Fatal(err)
		}
		e := &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
		out[e.Key] = e
	}
	return out
}

// expectSignal waits for a signal (want true) or checks that none comes
// within a while (want false).
func expectSignal(t *testing.T, m *Monitor, want bool, what string) {
	t.Helper()
	wait := 300 * time.Millisecond
	if want {
		wait = 5 * time.Second
	}
	select {
	case s := <-m.signals:
		if !want {
			t.Errorf("%s: signal %d, want none", what, s)
		} else if s != SignalForeign {
			t.Errorf("%s: signal %d, want a foreign change", what, s)
		}
	case <-time.After(wait):
		if want {
			t.Errorf("%s: no signal within %v", what, wait)
		}
	}
}

// openWatched opens a monitor and a dataplane in ns, closed when the test
// ends.
func openWatched(t *testing.T, ns *testnet.NS) (*Monitor, *dataplane.Dataplane) {
	t.Helper()
	m, err := Open(nil, ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	dp, err := dataplane.Open(nil, dataplane.Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dp.Close() })
	return m, dp
}

// TestMonitor runs in a fresh network namespace: the agent's own
// transactions raise no signal, a change to another table raises none, a
// foreign change to doorman's table does.
func TestMonitor(t *testing.T) {
	ns := testnet.NewNS(t, "drift")
	m, dp := openWatched(t, ns)
	k := m.Kernel(dp)

	if _, err := k.Sync(view(t)); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, m, false, "own sync")
	if _, known := m.commits.Port(); !known {
		t.Error("the agent's netlink port was not learnt from its own commit")
	}

	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(c *nftables.Conn)
		want   bool
	}{
		{"another table", func(c *nftables.Conn) {
			c.AddTable(&nftables.Table{Name: "firewall", Family: nftables.TableFamilyINet})
		}, false},
		{"doorman's chain flushed", func(c *nftables.Conn) {
			c.FlushChain(&nftables.Chain{Name: "services", Table: &nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet}})
		}, true},
		{"doorman's table deleted", func(c *nftables.Conn) {
			c.DelTable(&nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change(other)
			if err := other.Flush(); err != nil {
				t.Fatal(err)
			}
			expectSignal(t, m, tc.want, tc.name)
		})
	}
	// The agent's repair is its own commit again.
	if _, err := k.Sync(view(t)); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, m, false, "own repair")
}

// foreignFirst commits a change to another table, then syncs: a foreign
// commit inside the agent's own Sync.
type foreignFirst struct {
	*dataplane.Dataplane
	other *nftables.Conn
}

func (k foreignFirst) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	k.other.AddTable(&nftables.Table{Name: "firewall", Family: nftables.TableFamilyINet})
	if err := k.other.Flush(); err != nil {
		return dataplane.Stats{}, err
	}
	return k.Dataplane.Sync(view)
}

// TestQuietSync: a large Sync runs out of the events group, so the kernel
// builds no event per element for the monitor; a commit by someone else
// while it is out is noticed from the generation (events lost: resync).
func TestQuietSync(t *testing.T) {
	ns := testnet.NewNS(t, "quiet")
	m, dp := openWatched(t, ns)

	before := m.received.Load()
	if _, err := m.Kernel(dp).Sync(bigView(t, quietSyncEntries)); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, m, false, "own large sync")
	// 1,000 Services make over 3,000 element events when listened to.
	if got := m.received.Load() - before; got > 10 {
		t.Errorf("the monitor read %d event messages during a sync of %d entries, want none", got, quietSyncEntries)
	}

	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Kernel(foreignFirst{dp, other}).Sync(bigView(t, quietSyncEntries+1)); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-m.signals:
		if s != SignalLost {
			t.Errorf("signal %d after a foreign commit inside a large sync, want events lost (%d)", s, SignalLost)
		}
	case <-time.After(5 * time.Second):
		t.Error("no signal after a foreign commit inside a large sync")
	}

	// Back in the group: a foreign change to doorman's table is seen.
	other.FlushChain(&nftables.Chain{Name: "services", Table: &nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet}})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	expectSignal(t, m, true, "foreign change after a large sync")
}
