package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/doorman-proxy/doorman/controlplane/internal/auth"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// limitedServer serves a hub of services Services with limits and extra
// options over an in-memory listener; dial returns a new connection each
// time, as the agent makes one per stream.
func limitedServer(t *testing.T, services int, limits Limits, extra ...grpc.ServerOption) (h *hub.Hub, dial func() *grpc.ClientConn) {
	t.Helper()
	h = testHub(services, "n1")
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(append(append(Options(), limits.ServerOptions()...), extra...)...)
	Register(gs, h, nil)
	go func() { _ = gs.Serve(limits.Listener(lis)) }()
	t.Cleanup(func() {
		h.Close()
		gs.Stop()
	})
	return h, func() *grpc.ClientConn { return dialBufconn(t, lis) }
}

// agentSim is an agent across streams: it holds what it applied and
// resumes with its digests, and counts full and incremental updates.
type agentSim struct {
	c                 *client
	version           uint64
	full, incremental int
	firsts            []*doormanv1.SyncResponse // each stream's first update
}

func newAgentSim(t *testing.T) *agentSim {
	return &agentSim{c: &client{t: t, entries: map[string]*doormanv1.Entry{}}}
}

// session opens a stream on cc, says what it holds, applies and acks
// every update, and returns the error that ended the stream.
func (s *agentSim) session(cc *grpc.ClientConn, node, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(ctx)
	if err != nil {
		return err
	}
	hello := &doormanv1.Hello{NodeName: node}
	if len(s.c.entries) > 0 {
		d := s.c.digests()
		hello.Holding = &doormanv1.Holding{Version: s.version, ViewDigest: d.View(), BucketDigests: d.BucketList()}
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: hello}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	first := true
	for {
		r, err := stream.Recv()
		if err != nil {
			return err
		}
		if first {
			s.firsts = append(s.firsts, r)
			first = false
		}
		if r.GetFull() {
			s.full++
		} else {
			s.incremental++
		}
		s.c.apply(r)
		s.version = r.GetVersion()
		if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: r.GetVersion(), ViewDigest: s.c.digests().View()}}}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
}

// checkResumes checks that only the first stream got a full view, that
// the stream after the change of s3 got only s3's bucket, and that the
// others got nothing but a version.
func (s *agentSim) checkResumes(t *testing.T, changedBefore int) {
	t.Helper()
	if s.full != 1 {
		t.Errorf("%d full views sent over %d streams, want 1 (the first)", s.full, len(s.firsts))
	}
	for i, r := range s.firsts {
		switch i {
		case 0:
			if !r.GetFull() {
				t.Errorf("stream 0: first update not full")
			}
		case changedBefore:
			if r.GetFull() || !slices.Contains(upsertKeys(r), key("s3")) || len(r.GetUpserts()) > 3 || len(r.GetReplacedBuckets()) != 1 {
				t.Errorf("stream %d: full=%v upserts %v replaced buckets %v, want s3's bucket only", i, r.GetFull(), upsertKeys(r), r.GetReplacedBuckets())
			}
		default:
			if r.GetFull() || len(r.GetUpserts())+len(r.GetRemovals())+len(r.GetReplacedBuckets()) != 0 {
				t.Errorf("stream %d: full=%v, %d upserts, %d removals, %d replaced buckets; want only a version", i, r.GetFull(), len(r.GetUpserts()), len(r.GetRemovals()), len(r.GetReplacedBuckets()))
			}
		}
	}
	t.Logf("%d streams: %d full, %d incremental updates", len(s.firsts), s.full, s.incremental)
}

// MaxConnectionAge cuts the agent's stream; the agent comes back on a new
// connection with its digests and gets only what changed meanwhile.
func TestMaxConnectionAgeResume(t *testing.T) {
	h, dial := limitedServer(t, 20, Limits{MaxConnectionAge: 300 * time.Millisecond, MaxConnectionAgeGrace: 200 * time.Millisecond})
	sim := newAgentSim(t)
	const streams, changedBefore = 4, 2
	for i := range streams {
		if i == changedBefore {
			h.SetSlice(endpoints("s3", "10.9.9.9")) // while the agent is away
		}
		start := time.Now()
		err := sim.session(dial(), "n1", "")
		if got := status.Code(err); got != codes.Unavailable {
			t.Fatalf("stream %d ended with %v (%v), want Unavailable (connection aged out)", i, got, err)
		}
		lived := time.Since(start)
		t.Logf("stream %d cut after %s: %v", i, lived.Round(time.Millisecond), err)
		if lived < 300*time.Millisecond*9/10 {
			t.Errorf("stream %d cut after %s, before the connection's age (300 ms −10 %%)", i, lived)
		}
	}
	sim.checkResumes(t, changedBefore)
}

// jwt is a token the fake API server below knows as the agents', bound to
// node, expiring at exp.
func jwt(node string, exp time.Time) string {
	b, _ := json.Marshal(map[string]any{"node": node, "exp": exp.Unix()})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// reviewingClient answers TokenReviews for jwt's tokens.
func reviewingClient() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		parts := strings.Split(tr.Spec.Token, ".")
		var claims struct{ Node string }
		if len(parts) == 3 {
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(b, &claims)
		}
		if claims.Node != "" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: tr.Spec.Audiences, User: authenticationv1.UserInfo{
				Username: auth.ServiceAccountUser("doorman-system", "doorman-nodeagent"),
				Extra:    map[string]authenticationv1.ExtraValue{auth.NodeNameExtra: {claims.Node}},
			}}
		}
		return true, tr, nil
	})
	return c
}

// A stream ends when its token expires; the agent comes back with its
// rotated token and its digests and gets only what changed meanwhile.
func TestTokenExpiryResume(t *testing.T) {
	a, err := auth.New(auth.Config{Client: reviewingClient(), AgentUser: auth.ServiceAccountUser("doorman-system", "doorman-nodeagent"), Limits: auth.Limits{MinStreamLife: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	h, dial := limitedServer(t, 20, Limits{}, a.ServerOptions()...)
	sim := newAgentSim(t)
	cc := dial() // one connection: the cut is the stream's, not the connection's
	const streams, changedBefore = 3, 1
	for i := range streams {
		if i == changedBefore {
			h.SetSlice(endpoints("s3", "10.9.9.9"))
		}
		// JWT expiry has whole seconds: this one lives 1–2 s.
		exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
		err := sim.session(cc, "n1", jwt("n1", exp))
		if got := status.Code(err); got != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("stream %d ended with %v (%v), want Unauthenticated saying the token expired", i, got, err)
		}
		if now := time.Now(); now.Before(exp) {
			t.Errorf("stream %d ended at %s, before its token expired (%s)", i, now.Format(time.StampMilli), exp.Format(time.StampMilli))
		}
	}
	sim.checkResumes(t, changedBefore)
}

// MaxConcurrentStreams: a connection opens no more streams than allowed.
func TestMaxConcurrentStreams(t *testing.T) {
	_, dial := limitedServer(t, 1, Limits{MaxConcurrentStreams: 1})
	cc := dial()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, err := doormanv1.NewAgentServiceClient(cc).Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n1"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	// The second stream waits for the first to end: it gets no update.
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	second, err := doormanv1.NewAgentServiceClient(cc).Sync(sctx)
	if err == nil {
		if err = second.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n1"}}}); err == nil || errors.Is(err, io.EOF) {
			_, err = second.Recv()
		}
	}
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Errorf("second stream on the connection: %v (%v), want DeadlineExceeded (no stream quota)", got, err)
	}
}

// Listener: connections over MaxConnections wait until one closes.
func TestMaxConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	limited := Limits{MaxConnections: 2}.Listener(lis)
	t.Cleanup(func() { _ = limited.Close() })
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := limited.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	var open []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			open = append(open, c)
		case <-time.After(10 * time.Second):
			t.Fatal("the first two connections were not accepted")
		}
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted over the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	_ = open[0].Close()
	select {
	case c := <-accepted:
		_ = c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection was not accepted after one closed")
	}
	_ = open[1].Close()
}
