package echo

import (
	"context"
	"net"
	"testing"
)

// serveLoopback starts an echo server named name on loopback, over TCP and
// UDP, for the test's duration, and returns it and its two addresses.
func serveLoopback(t *testing.T, name string) (srv *Server, tcpAddr, udpAddr string) {
	t.Helper()
	srv = NewServer(name)
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeTCP(ln)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeUDP(pc)
	return srv, ln.Addr().String(), pc.LocalAddr().String()
}

func TestAsk(t *testing.T) {
	srv, tcpAddr, udpAddr := serveLoopback(t, "pod-a")

	tests := []struct {
		name, proto, addr, request string
		want                       func(string) bool
	}{
		{"http hostname", "tcp", tcpAddr, "hostname", func(s string) bool { return s == "pod-a" }},
		{"http clientip", "tcp", tcpAddr, "clientip", isLoopbackAddr},
		{"udp hostname", "udp", udpAddr, "hostname", func(s string) bool { return s == "pod-a" }},
		{"udp clientip", "udp", udpAddr, "clientip", isLoopbackAddr},
		{"udp echo", "udp", udpAddr, "echo hi there", func(s string) bool { return s == "hi there" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Ask(context.Background(), nil, tt.proto, tt.addr, tt.request)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(got) {
				t.Errorf("Ask(%s %s) = %q", tt.proto, tt.request, got)
			}
		})
	}
	t.Run("session", func(t *testing.T) {
		ctx := context.Background()
		sess, err := OpenSession(ctx, nil, tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sess.Close() }()
		for _, req := range []string{"hostname", "hostname", "clientip"} {
			got, err := sess.Ask(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			want := "pod-a"
			if req == "clientip" {
				want = sess.LocalAddr().String()
			}
			if got != want {
				t.Errorf("session Ask(%s) = %q, want %q", req, got, want)
			}
		}
	})
	t.Run("closed", func(t *testing.T) {
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := Ask(context.Background(), nil, "tcp", tcpAddr, "hostname"); err == nil {
			t.Error("Ask after Close succeeded, want an error")
		}
	})
}

func isLoopbackAddr(s string) bool {
	host, _, err := net.SplitHostPort(s)
	return err == nil && net.ParseIP(host).IsLoopback()
}
