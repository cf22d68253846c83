package drift

import (
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func view(t *testing.T) map[string]*doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: "web", PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80,
		Endpoints: []*doormanv1.Endpoint{{Ip: "10.244.1.2", Port: 8080}},
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	e := &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
	return map[string]*doormanv1.Entry{e.Key: e}
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

// TestMonitor runs in a fresh network namespace: the agent's own
// transactions raise no signal, a change to another table raises none, a
// foreign change to doorman's table does.
func TestMonitor(t *testing.T) {
	ns := testnet.NewNS(t, "drift")
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
