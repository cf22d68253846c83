package echo

import (
	"context"
	"net"
	"testing"
)

func TestAsk(t *testing.T) {
	srv := NewServer("pod-a")
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

	tests := []struct {
		name, proto, addr, request string
		want                       func(string) bool
	}{
		{"http hostname", "tcp", ln.Addr().String(), "hostname", func(s string) bool { return s == "pod-a" }},
		{"http clientip", "tcp", ln.Addr().String(), "clientip", isLoopbackAddr},
		{"udp hostname", "udp", pc.LocalAddr().String(), "hostname", func(s string) bool { return s == "pod-a" }},
		{"udp clientip", "udp", pc.LocalAddr().String(), "clientip", isLoopbackAddr},
		{"udp echo", "udp", pc.LocalAddr().String(), "echo hi there", func(s string) bool { return s == "hi there" }},
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
		sess, err := OpenSession(ctx, nil, ln.Addr().String())
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
		if _, err := Ask(context.Background(), nil, "tcp", ln.Addr().String(), "hostname"); err == nil {
			t.Error("Ask after Close succeeded, want an error")
		}
	})
}

func isLoopbackAddr(s string) bool {
	host, _, err := net.SplitHostPort(s)
	return err == nil && net.ParseIP(host).IsLoopback()
}
