package conntrack_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// dnsService is a UDP Service on 10.96.0.53:53 whose endpoints are
// "address:port".
func dnsService(eps ...string) *doormanv1.Entry {
	s := &doormanv1.ServicePort{Namespace: "kube-system", Name: "dns", Protocol: doormanv1.Protocol_PROTOCOL_UDP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.53", Port: 53}
	for _, ep := range eps {
		host, port, _ := strings.Cut(ep, ":")
		p, _ := strconv.Atoi(port)
		s.Endpoints = append(s.Endpoints, &doormanv1.Endpoint{Ip: host, Port: uint32(p)})
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(s), Value: &doormanv1.Entry_ServicePort{ServicePort: s}}
}

// TestCleanMovesUDPClient: a UDP client keeps its socket (one conntrack
// entry); after its endpoint leaves the Service, or the endpoint's target
// port changes, the entry still leads to the old one until Clean deletes
// it, then the client reaches the new one.
func TestCleanMovesUDPClient(t *testing.T) {
	tests := []struct {
		name     string
		old, new *doormanv1.Entry
	}{
		{name: "endpoint replaced", old: dnsService("10.0.2.2:5353"), new: dnsService("10.0.3.2:5353")},
		{name: "target port changed", old: dnsService("10.0.2.2:5353"), new: dnsService("10.0.2.2:5354")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { testCleanMoves(t, tc.old, tc.new) })
	}
}

// testCleanMoves runs one UDP client against old, applies new, and checks
// the answer moves from "old" to "new" only once Clean ran. Echo servers
// name themselves after the endpoint they serve.
func testCleanMoves(t *testing.T, old, moved *doormanv1.Entry) {
	client, node := testnet.NewNS(t, "client"), testnet.NewNS(t, "node")
	testnet.Link(t, client, []string{"10.0.1.2/24"}, node, []string{"10.0.1.1/24"})
	node.EnableForwarding(t)
	client.AddRoute(t, "10.96.0.0/16", "10.0.1.1")
	for i := 0; i < 2; i++ {
		s := testnet.NewNS(t, "server")
		testnet.Link(t, node, []string{fmt.Sprintf("10.0.%d.1/24", i+2)}, s, []string{fmt.Sprintf("10.0.%d.2/24", i+2)})
		s.AddRoute(t, "default", fmt.Sprintf("10.0.%d.1", i+2))
		for _, port := range []int{5353, 5354} {
			addr := fmt.Sprintf("10.0.%d.2:%d", i+2, port)
			s.UDPEcho(t, addr, addr)
		}
	}
	endpoint := func(e *doormanv1.Entry) string {
		ep := e.GetServicePort().GetEndpoints()[0]
		return fmt.Sprintf("%s:%d", ep.GetIp(), ep.GetPort())
	}
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	c, err := conntrack.New(hclog.NewNullLogger(), conntrack.Options{NetNSPath: node.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	nodeEntry := &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "node"}}}
	if _, err := d.Sync(map[string]*doormanv1.Entry{old.GetKey(): old, doormanv1.NodeKey: nodeEntry}); err != nil {
		t.Fatal(err)
	}

	// One socket, one source port, one conntrack entry.
	var conn *net.UDPConn
	if err := client.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("10.0.1.2"), Port: 40053})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ask := func() string {
		t.Helper()
		if _, err := conn.WriteTo([]byte("ping\n"), &net.UDPAddr{IP: net.ParseIP("10.96.0.53"), Port: 53}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 256)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		name, _, _ := strings.Cut(string(buf[:n]), " ")
		return name
	}
	if got, want := ask(), endpoint(old); got != want {
		t.Fatalf("answer from %s, want %s", got, want)
	}

	changes := []dataplane.Change{{Key: old.GetKey(), Old: old, New: moved}}
	if _, err := d.Apply(changes); err != nil {
		t.Fatal(err)
	}
	// Control: the rules moved but the entry still leads to the old endpoint.
	if got, want := ask(), endpoint(old); got != want {
		t.Fatalf("before Clean: answer from %s, want %s (the stale entry)", got, want)
	}
	if err := c.Clean(changes); err != nil {
		t.Fatalf("Clean: %v", err)
	}
	if got, want := ask(), endpoint(moved); got != want {
		t.Errorf("after Clean: answer from %s, want %s", got, want)
	}
}
