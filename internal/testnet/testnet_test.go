package testnet_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
)

// TestRoutedEcho builds client — router — server over two veth pairs (IPv4
// and IPv6) and checks that both echo servers answer with their name and the
// client's address, and that a closed port is refused.
func TestRoutedEcho(t *testing.T) {
	client := testnet.NewNS(t, "client")
	router := testnet.NewNS(t, "router")
	server := testnet.NewNS(t, "server")
	testnet.Link(t, client, []string{"10.0.1.2/24", "fd00:1::2/64"}, router, []string{"10.0.1.1/24", "fd00:1::1/64"})
	testnet.Link(t, router, []string{"10.0.2.1/24", "fd00:2::1/64"}, server, []string{"10.0.2.2/24", "fd00:2::2/64"})
	router.EnableForwarding(t)
	client.AddRoute(t, "default", "10.0.1.1")
	client.AddRoute(t, "default", "fd00:1::1")
	server.AddRoute(t, "default", "10.0.2.1")
	server.AddRoute(t, "default", "fd00:2::1")
	server.TCPEcho(t, "srv", "10.0.2.2:8080")
	server.TCPEcho(t, "srv6", "[fd00:2::2]:8080")
	server.UDPEcho(t, "usrv", "10.0.2.2:5353")

	tests := []struct {
		name, addr, wantPrefix string
		udp                    bool
	}{
		{"tcp4", "10.0.2.2:8080", "srv 10.0.1.2:", false},
		{"tcp6", "[fd00:2::2]:8080", "srv6 [fd00:1::2]:", false},
		{"udp4", "10.0.2.2:5353", "usrv 10.0.1.2:", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dial := client.DialTCP
			if tc.udp {
				dial = client.DialUDP
			}
			got, err := dial(tc.addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("answer = %q, want prefix %q", got, tc.wantPrefix)
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		_, err := client.DialTCP("10.0.2.2:9999", 2*time.Second)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial closed port: err = %v, want ECONNREFUSED", err)
		}
	})
}

func TestNamesAreUnique(t *testing.T) {
	a := testnet.NewNS(t, "same")
	b := testnet.NewNS(t, "same")
	if a.Name == b.Name {
		t.Errorf("two namespaces named %q", a.Name)
	}
}

// TestLinkJoinsSolicitedNode: when Link returns, each end has joined the
// solicited-node multicast group of its IPv6 address, so that its peer's
// first neighbor solicitation is answered (the kernel joins in a work
// queue after the link comes up, often a few milliseconds after; a
// solicitation lost then costs the first packet a second). Several links,
// as the join is late only on some.
func TestLinkJoinsSolicitedNode(t *testing.T) {
	for range 20 {
		a, b := testnet.NewNS(t, "sna"), testnet.NewNS(t, "snb")
		aIf, bIf := testnet.Link(t, a, []string{"fd00:5::abc:2/64"}, b, []string{"fd00:5::def:1/64"})
		for _, end := range []struct {
			ns     *testnet.NS
			ifname string
			group  string
		}{{a, aIf, "ff0200000000000000000001ffbc0002"}, {b, bIf, "ff0200000000000000000001ffef0001"}} {
			var groups []byte
			if err := end.ns.Do(func() error {
				var err error
				groups, err = os.ReadFile("/proc/thread-self/net/igmp6")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(strings.Split(string(groups), "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 3 && f[1] == end.ifname && f[2] == end.group
			}) {
				t.Fatalf("%s in %s has not joined %s:\n%s", end.ifname, end.ns.Name, end.group, groups)
			}
		}
	}
}
