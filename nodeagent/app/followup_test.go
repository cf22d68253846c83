package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func withDigest(t *testing.T, sp *doormanv1.ServicePort) *doormanv1.Entry {
	t.Helper()
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func nodeWithDigest(t *testing.T, addrs ...string) *doormanv1.Entry {
	t.Helper()
	n := &doormanv1.Node{Name: "node-1", NodeportAddresses: addrs}
	d, err := doormanv1.ValueDigest(n)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.NodeKey, Digest: d, Value: &doormanv1.Entry_Node{Node: n}}
}

// dnsAt is a UDP Service whose only endpoint is eps.
func dnsAt(t *testing.T, eps ...string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "kube-system", Name: "dns", Protocol: doormanv1.Protocol_PROTOCOL_UDP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.53", Port: 53}
	for _, ip := range eps {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 5353})
	}
	return withDigest(t, sp)
}

// healthChecked is a TCP Service with externalTrafficPolicy Local and a
// health check node port, with the given local endpoints.
func healthChecked(t *testing.T, local ...*doormanv1.Endpoint) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "lb", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.80", Port: 80, NodePort: 30080,
		ExternalPolicyLocal: true, HealthCheckNodePort: 32100,
		Endpoints:      []*doormanv1.Endpoint{{Ip: "10.0.2.2", Port: 8080}, {Ip: "10.0.3.2", Port: 8080}},
		LocalEndpoints: local}
	return withDigest(t, sp)
}

// TestFollowUps: through the whole agent, a UDP endpoint's removal deletes
// the client's conntrack entry toward it (the same socket then reaches the
// new endpoint), and a healthCheckNodePort answers from the node's
// namespace, on the configured address: 200 with a local endpoint, 503
// once it has only a terminating one.
func TestFollowUps(t *testing.T) {
	client, node := testnet.NewNS(t, "client"), testnet.NewNS(t, "node")
	testnet.Link(t, client, []string{"10.0.1.2/24"}, node, []string{"10.0.1.1/24"})
	node.EnableForwarding(t)
	client.AddRoute(t, "10.96.0.0/16", "10.0.1.1")
	for i := range 2 {
		s := testnet.NewNS(t, "server")
		testnet.Link(t, node, []string{fmt.Sprintf("10.0.%d.1/24", i+2)}, s, []string{fmt.Sprintf("10.0.%d.2/24", i+2)})
		s.AddRoute(t, "default", fmt.Sprintf("10.0.%d.1", i+2))
		s.UDPEcho(t, fmt.Sprintf("server%d", i+1), fmt.Sprintf("10.0.%d.2:5353", i+2))
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	run := startAgentWith(t, node, "", func(c *Config) {
		c.ControlPlanes = []string{lis.Addr().String()}
		c.HealthCheckAddress = "10.0.1.1"
	})
	receive(t, cp.hellos, "hello")
	version := uint64(0)
	send := func(full bool, view, upserts []*doormanv1.Entry) {
		t.Helper()
		version++
		cp.updates <- &doormanv1.SyncResponse{Version: version, Full: full, Upserts: upserts, ViewDigest: digestOf(view)}
		if r := receive(t, cp.replies, "reply"); r.GetAck().GetVersion() != version {
			t.Fatalf("reply %v, want an ack of version %d\nlogs:\n%s", r, version, run.logs.String())
		}
	}
	nodeEntry := nodeWithDigest(t, "10.0.1.1")
	ready := &doormanv1.Endpoint{Ip: "10.0.2.2", Port: 8080}
	view := []*doormanv1.Entry{nodeEntry, dnsAt(t, "10.0.2.2"), healthChecked(t, ready)}
	send(true, view, view)

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
	if got := ask(); got != "server1" {
		t.Fatalf("answer from %s, want server1", got)
	}

	httpClient := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := client.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
	healthCode := func() int {
		t.Helper()
		resp, err := httpClient.Get("http://10.0.1.1:32100/")
		if err != nil {
			t.Fatalf("health check: %v\nlogs:\n%s", err, run.logs.String())
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := healthCode(); got != http.StatusOK {
		t.Errorf("health check with a local endpoint: %d, want 200", got)
	}

	// The endpoint moves: the ack comes after the kernel committed and the
	// stale entry went, so the same socket reaches server2 at once.
	moved := dnsAt(t, "10.0.3.2")
	terminating := healthChecked(t, &doormanv1.Endpoint{Ip: "10.0.2.2", Port: 8080, Terminating: true})
	view = []*doormanv1.Entry{nodeEntry, moved, terminating}
	send(false, view, []*doormanv1.Entry{moved, terminating})
	if got := ask(); got != "server2" {
		t.Errorf("after the endpoint moved: answer from %s, want server2 (stale conntrack entry kept?)\nlogs:\n%s", got, run.logs.String())
	}
	if got := healthCode(); got != http.StatusServiceUnavailable {
		t.Errorf("health check with only a terminating endpoint: %d, want 503", got)
	}
}
