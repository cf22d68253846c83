package main

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// fullViewServer sends each stream an (empty) full view once every
// stream it expects has said hello, or after a pause, and counts the
// streams sent a view they have not acked yet.
type fullViewServer struct {
	doormanv1.UnimplementedAgentServiceServer
	expect int
	wait   time.Duration

	mu          sync.Mutex
	hellos      int
	pending     int
	maxPending  int
	allHelloed  chan struct{}
	acked       chan struct{}
	ackedByNode map[string]bool
}

func (s *fullViewServer) Sync(stream doormanv1.AgentService_SyncServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.hellos++
	s.pending++
	s.maxPending = max(s.maxPending, s.pending)
	if s.hellos == s.expect {
		close(s.allHelloed)
	}
	s.mu.Unlock()
	select {
	case <-s.allHelloed:
	case <-time.After(s.wait):
	}
	var empty doormanv1.Digests
	if err := stream.Send(&doormanv1.SyncResponse{Version: 7, Full: true, ViewDigest: empty.View()}); err != nil {
		return err
	}
	if _, err := stream.Recv(); err != nil {
		return err
	}
	s.mu.Lock()
	s.pending--
	s.ackedByNode[req.GetHello().GetNodeName()] = true
	if len(s.ackedByNode) == s.expect {
		close(s.acked)
	}
	s.mu.Unlock()
	<-stream.Context().Done()
	return nil
}

// runSessions runs one session of each agent against srv at once and
// returns the most streams that were sent a full view and had not acked
// it.
func runSessions(t *testing.T, s *scaleSim, srv *fullViewServer) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	addr := ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, a := range s.agents {
		cc, err := grpc.NewClient(addr, a.dialOptions(nil)...)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cc.Close() }()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.session(ctx, cc, s)
		}()
	}
	select {
	case <-srv.acked:
	case <-ctx.Done():
		t.Fatalf("%d of %d agents acked", len(srv.ackedByNode), srv.expect)
	}
	cancel()
	wg.Wait()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.maxPending
}

// Agents that hold nothing receive their full view at most fullViews at
// a time; agents that hold a view (they resume by digests) are not held
// back.
func TestFullViewsBounded(t *testing.T) {
	for _, tt := range []struct {
		name    string
		holding bool
		bound   int64
		want    func(maxPending int) bool
		says    string
	}{
		// An agent lets the next one in once it has sent its ACK, which
		// the server may not have read yet: it counts up to twice the
		// bound, never every agent.
		{"agents holding nothing", false, 2, func(n int) bool { return n >= 1 && n <= 4 }, "between 1 and twice the bound, 4"},
		{"agents holding a view", true, 1, func(n int) bool { return n == 8 }, "every agent at once, 8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &scaleSim{log: hclog.NewNullLogger(), fullViews: semaphore.NewWeighted(tt.bound)}
			for i := range 8 {
				a := &simAgent{name: simNodeName(i), source: simSourceIP(i), view: newAgentView(newKeyTable())}
				if tt.holding {
					a.view.version = 6
				}
				s.agents = append(s.agents, a)
			}
			s.beginEpoch()
			srv := &fullViewServer{expect: 8, wait: 200 * time.Millisecond, allHelloed: make(chan struct{}),
				acked: make(chan struct{}), ackedByNode: map[string]bool{}}
			if got := runSessions(t, s, srv); !tt.want(got) {
				t.Errorf("at most %d full views unacked at once, want %s", got, tt.says)
			}
		})
	}
}

// refusingServer puts off every stream, as a replica not serving yet
// does, and records the connection each came on.
type refusingServer struct {
	doormanv1.UnimplementedAgentServiceServer
	peers chan string
}

func (s *refusingServer) Sync(stream doormanv1.AgentService_SyncServer) error {
	p, _ := peer.FromContext(stream.Context())
	s.peers <- p.Addr.String()
	return status.Error(codes.Unavailable, "not serving yet")
}

// Each of an agent's streams comes on a connection of its own, as the
// node agent's do: none waits for the reconnection backoff of one that
// failed before.
func TestSimAgentDialsPerStream(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &refusingServer{peers: make(chan string, 16)}
	gs := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	defer gs.Stop()
	a := &simAgent{name: simNodeName(0), addrs: []string{ln.Addr().String()}, source: simSourceIP(0), view: newAgentView(newKeyTable())}
	s := &scaleSim{log: hclog.NewNullLogger(), agents: []*simAgent{a}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.run(ctx, s)
	}()
	seen := map[string]bool{}
	for range 3 {
		select {
		case p := <-srv.peers:
			if seen[p] {
				t.Errorf("two streams on the connection from %s", p)
			}
			seen[p] = true
		case <-ctx.Done():
			t.Fatalf("%d streams in 10 s", len(seen))
		}
	}
	cancel()
	<-done
	// The first two streams ended before the third was opened.
	if got := s.firstRecv[codes.Unavailable].Load(); got < 2 {
		t.Errorf("%d streams put off, want at least 2", got)
	}
}
