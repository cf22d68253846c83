package healthcheck_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func entry(name string, hc uint32, local ...*doormanv1.Endpoint) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: name, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.1", Port: 80, ExternalPolicyLocal: true,
		HealthCheckNodePort: hc, LocalEndpoints: local}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

// TestServersInNamespace: the node answers on each health check port inside
// its namespace, from another namespace: 200 with the count of local ready
// endpoints, 503 when only terminating ones are left; a port leaves with its
// Service.
func TestServersInNamespace(t *testing.T) {
	client, node := testnet.NewNS(t, "client"), testnet.NewNS(t, "node")
	testnet.Link(t, client, []string{"10.0.1.2/24"}, node, []string{"10.0.1.1/24"})
	s := healthcheck.New(hclog.NewNullLogger(), healthcheck.Options{NetNSPath: node.Path()})
	t.Cleanup(func() { _ = s.Close() })

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
	get := func(port int) (int, int, error) {
		resp, err := httpClient.Get(fmt.Sprintf("http://10.0.1.1:%d/", port))
		if err != nil {
			return 0, 0, err
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		var body struct {
			Service        struct{ Namespace, Name string }
			LocalEndpoints int
		}
		if err := json.Unmarshal(b, &body); err != nil {
			return resp.StatusCode, 0, fmt.Errorf("body %q: %w", b, err)
		}
		return resp.StatusCode, body.LocalEndpoints, nil
	}
	ready := func(ip string) *doormanv1.Endpoint { return &doormanv1.Endpoint{Ip: ip, Port: 80} }
	term := func(ip string) *doormanv1.Endpoint { return &doormanv1.Endpoint{Ip: ip, Port: 80, Terminating: true} }

	steps := []struct {
		name  string
		view  []*doormanv1.Entry
		check map[int][2]int // port → status, count; status 0 = refused
	}{
		{"two services", []*doormanv1.Entry{entry("a", 32000, ready("10.0.2.2"), ready("10.0.2.3")), entry("b", 32001)},
			map[int][2]int{32000: {200, 2}, 32001: {503, 0}}},
		{"counts change", []*doormanv1.Entry{entry("a", 32000, term("10.0.2.2")), entry("b", 32001, ready("10.0.2.4"))},
			map[int][2]int{32000: {503, 0}, 32001: {200, 1}}},
		{"service leaves", []*doormanv1.Entry{entry("b", 32001, ready("10.0.2.4"))},
			map[int][2]int{32000: {0, 0}, 32001: {200, 1}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			view := map[string]*doormanv1.Entry{}
			for _, e := range st.view {
				view[e.GetKey()] = e
			}
			if err := s.Update(view); err != nil {
				t.Fatalf("Update: %v", err)
			}
			for port, want := range st.check {
				code, n, err := get(port)
				if want[0] == 0 {
					if err == nil {
						t.Errorf("port %d: answered %d, want no listener", port, code)
					}
					continue
				}
				if err != nil {
					t.Errorf("port %d: %v", port, err)
					continue
				}
				if code != want[0] || n != want[1] {
					t.Errorf("port %d: status %d, localEndpoints %d; want %d, %d", port, code, n, want[0], want[1])
				}
			}
		})
	}
}
