package stream

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// blackhole forwards loopback TCP connections to a target until freeze:
// from then on the connections it holds swallow every byte, both ways, and
// stay open, like a peer that lost power behind a partition.
type blackhole struct {
	target string
	mu     sync.Mutex
	frozen []*atomic.Bool
}

func (b *blackhole) serve(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", b.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			t.Cleanup(func() { _ = c.Close(); _ = up.Close() })
			frozen := &atomic.Bool{}
			b.mu.Lock()
			b.frozen = append(b.frozen, frozen)
			b.mu.Unlock()
			go pipe(up, c, frozen)
			go pipe(c, up, frozen)
		}
	}()
	return lis.Addr().String()
}

func pipe(dst io.Writer, src io.Reader, frozen *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func (b *blackhole) freeze() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.frozen {
		f.Store(true)
	}
}

// TestKeepaliveNoticesSilentControlPlane: a control plane that stops
// answering without closing the connection is given up after the keepalive
// ping times out, and the agent says Hello again on a new connection.
// gRPC raises a keepalive time below 10 s to 10 s, so this takes about 11 s.
func TestKeepaliveNoticesSilentControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a keepalive ping to time out (about 11 s)")
	}
	saved := Keepalive
	Keepalive = keepalive.ClientParameters{Time: 10 * time.Second, Timeout: time.Second, PermitWithoutStream: true}
	t.Cleanup(func() { Keepalive = saved })

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := newControlPlane()
	srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	doormanv1.RegisterAgentServiceServer(srv, cp)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	bh := &blackhole{target: lis.Addr().String()}
	addr := bh.serve(t)

	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Targets: Static(addr), DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, Agent: a, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	receive(t, cp.hellos, "first hello")
	bh.freeze()
	frozen := time.Now()
	select {
	case <-cp.hellos:
		t.Logf("silent control plane given up after %v", time.Since(frozen).Round(100*time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatalf("still on the silent connection after 20s: status %v", a.Status(false))
	}
}
