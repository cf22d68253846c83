package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// from is a context whose gRPC peer is ip.
func from(ip string) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
}

func TestOutcomeTTLs(t *testing.T) {
	base := time.Unix(1_000_000, 0)
	type step struct {
		at          time.Duration // since base
		wantReviews int32
	}
	tests := []struct {
		name     string
		limits   Limits
		token    string
		wantCode codes.Code
		steps    []step
	}{
		{name: "admission reused for the success ttl", token: "agent:n1", wantCode: codes.OK,
			steps: []step{{0, 1}, {DefaultSuccessTTL - time.Second, 1}, {DefaultSuccessTTL, 2}}},
		{name: "refusal reused for the failure ttl", token: "garbage", wantCode: codes.Unauthenticated,
			steps: []step{{0, 1}, {DefaultFailureTTL - time.Second, 1}, {DefaultFailureTTL, 2}}},
		{name: "permission refusal reused for the failure ttl", token: "other-sa", wantCode: codes.PermissionDenied,
			steps: []step{{0, 1}, {DefaultFailureTTL - time.Second, 1}, {DefaultFailureTTL, 2}}},
		{name: "admission ends with its token", token: jwt("n1", base.Add(5*time.Second).Unix()), wantCode: codes.OK,
			steps: []step{{0, 1}, {4 * time.Second, 1}, {5 * time.Second, 2}}},
		{name: "token longer than the ttl", token: jwt("n1", base.Add(time.Hour).Unix()), wantCode: codes.OK,
			steps: []step{{0, 1}, {DefaultSuccessTTL - time.Second, 1}, {DefaultSuccessTTL, 2}}},
		{name: "own ttls", limits: Limits{SuccessTTL: time.Minute}, token: "agent:n1", wantCode: codes.OK,
			steps: []step{{0, 1}, {59 * time.Second, 1}, {time.Minute, 2}}},
		{name: "admissions not cached", limits: Limits{SuccessTTL: -1}, token: "agent:n1", wantCode: codes.OK,
			steps: []step{{0, 1}, {0, 2}}},
		{name: "refusals not cached", limits: Limits{FailureTTL: -1}, token: "garbage", wantCode: codes.Unauthenticated,
			steps: []step{{0, 1}, {0, 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := base
			f := &fakeAPI{}
			a := newAuthLimits(t, f, func() time.Time { return now }, tt.limits)
			for i, st := range tt.steps {
				now = base.Add(st.at)
				_, err := a.Agent(context.Background(), tt.token)
				if got := status.Code(err); got != tt.wantCode {
					t.Fatalf("step %d: code %v (%v), want %v", i, got, err, tt.wantCode)
				}
				if got := f.reviews.Load(); got != st.wantReviews {
					t.Errorf("step %d (+%s): %d reviews, want %d", i, st.at, got, st.wantReviews)
				}
			}
		})
	}
}

// Refusals have a cache of their own: any number of invalid tokens
// leaves every admission in place; admissions are bounded by their own
// size only.
func TestRefusalsNeverEvictAdmissions(t *testing.T) {
	const agents, junk = 8, 2000
	f := &fakeAPI{}
	now := time.Unix(1_000_000, 0) // no admission expires meanwhile
	a := newAuthLimits(t, f, func() time.Time { return now }, Limits{SuccessCacheSize: agents, FailureCacheSize: 16, ReviewQPS: -1, PeerFailureBurst: -1})
	ctx := context.Background()
	for i := range agents {
		if _, err := a.Agent(ctx, fmt.Sprintf("agent:n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range junk {
		if _, err := a.Agent(ctx, fmt.Sprintf("junk-%d", i)); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("junk %d: %v", i, err)
		}
	}
	before := f.reviews.Load()
	for i := range agents {
		adm, err := a.Agent(ctx, fmt.Sprintf("agent:n%d", i))
		if err != nil || adm.Node != fmt.Sprintf("n%d", i) {
			t.Fatalf("agent n%d after the junk: %+v, %v", i, adm, err)
		}
	}
	if got := f.reviews.Load() - before; got != 0 {
		t.Errorf("%d reviews to admit the agents again after %d invalid tokens, want 0 (all cached)", got, junk)
	}
	want := Stats{Admitted: agents, Refused: 16, AdmittedEvicted: 0}
	if diff := cmp.Diff(want, a.Stats()); diff != "" {
		t.Errorf("stats after the junk (-want +got):\n%s", diff)
	}
	// One more agent than the cache holds: the least recently used
	// admission goes, and only then.
	if _, err := a.Agent(ctx, "agent:one-more"); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats().AdmittedEvicted; got != 1 {
		t.Errorf("%d admissions evicted by one more agent, want 1", got)
	}
}

// Callers presenting the same token at once share one review.
func TestOneReviewPerToken(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		wantCode codes.Code
	}{
		{name: "valid", token: "agent:n1", wantCode: codes.OK},
		{name: "invalid", token: "garbage", wantCode: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAPI{delay: 50 * time.Millisecond}
			a := newAuthLimits(t, f, nil, Limits{PeerFailureBurst: -1})
			const callers = 64
			var wg sync.WaitGroup
			codesSeen := make([]codes.Code, callers)
			for i := range callers {
				wg.Go(func() {
					_, err := a.Agent(from(fmt.Sprintf("10.0.0.%d", i)), tt.token)
					codesSeen[i] = status.Code(err)
				})
			}
			wg.Wait()
			for i, c := range codesSeen {
				if c != tt.wantCode {
					t.Errorf("caller %d: code %v, want %v", i, c, tt.wantCode)
				}
			}
			if got := f.reviews.Load(); got != 1 {
				t.Errorf("%d reviews for %d callers of one token, want 1", got, callers)
			}
		})
	}
}

// hangingAPI is an API server whose TokenReviews never answer until the
// request is given up; it counts them.
func hangingAPI(t *testing.T) (kubernetes.Interface, *atomic.Int32) {
	var hits atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/tokenreviews") {
			hits.Add(1)
			// Read the body so that the server notices the client
			// giving up (it watches the connection only after the body).
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	cfg := &rest.Config{Host: srv.URL, QPS: -1}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client, &hits
}

// A review that gets no answer is given up after ReviewTimeout, is not
// cached, and the caller is told to come back.
func TestReviewDeadline(t *testing.T) {
	client, hits := hangingAPI(t)
	a, err := New(Config{Client: client, AgentUser: agentUser, Limits: Limits{ReviewTimeout: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		_, err := a.Agent(ctx, "agent:n1")
		if got := status.Code(err); got != codes.Unavailable {
			t.Fatalf("call %d: code %v (%v), want Unavailable", i, got, err)
		}
		if got := hits.Load(); got != int32(i+1) {
			t.Errorf("call %d: %d reviews reached the API server, want %d (a timeout is not cached)", i, got, i+1)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the review outlived its deadline")
	}
}

// Reviews go out no faster than ReviewQPS once the burst is spent.
func TestReviewRate(t *testing.T) {
	const qps, burst, tokens = 50, 5, 30
	f := &fakeAPI{}
	a := newAuthLimits(t, f, nil, Limits{ReviewQPS: qps, ReviewBurst: burst})
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range tokens {
		wg.Go(func() {
			if _, err := a.Agent(from(fmt.Sprintf("10.0.1.%d", i)), fmt.Sprintf("agent:n%d", i)); err != nil {
				failed.Add(1)
				t.Errorf("agent n%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	// A lower bound only: a loaded machine makes it longer, never shorter.
	least := time.Duration(float64(tokens-burst) / qps * float64(time.Second))
	if elapsed < least*9/10 {
		t.Errorf("%d reviews in %s, want at least %s at %d/s after a burst of %d", tokens, elapsed, least, qps, burst)
	}
	if got := f.reviews.Load(); got != tokens {
		t.Errorf("%d reviews, want %d", got, tokens)
	}
	t.Logf("%d reviews in %s (at least %s at %d/s, burst %d)", tokens, elapsed.Round(time.Millisecond), least, qps, burst)
}

// A review that would wait longer than ReviewTimeout for its turn is
// refused at once, without a review: the queue stays bounded.
func TestReviewQueueBounded(t *testing.T) {
	const qps, timeout, callers = 10, 300 * time.Millisecond, 20
	f := &fakeAPI{}
	a := newAuthLimits(t, f, nil, Limits{ReviewQPS: qps, ReviewBurst: 1, ReviewTimeout: timeout})
	var wg sync.WaitGroup
	var busy atomic.Int32
	for i := range callers {
		wg.Go(func() {
			_, err := a.Agent(from(fmt.Sprintf("10.0.2.%d", i)), fmt.Sprintf("agent:n%d", i))
			if status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), errBusy.Error()) {
				busy.Add(1)
			}
		})
	}
	wg.Wait()
	// One goes at once (the burst), qps × timeout may queue (3), the
	// last of them may just miss its turn; the rest are refused.
	queued := int32(qps * timeout.Seconds())
	if got := f.reviews.Load(); got > 1+queued {
		t.Errorf("%d reviews, want at most %d", got, 1+queued)
	}
	if got := busy.Load(); got < callers-1-queued {
		t.Errorf("%d callers refused as busy, want at least %d", got, callers-1-queued)
	}
}

// Each peer has a budget of failed reviews; out of it, its uncached
// tokens are refused without a review, while other peers and cached
// admissions are not affected.
func TestPeerFailureBudget(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	f := &fakeAPI{}
	a := newAuthLimits(t, f, func() time.Time { return now }, Limits{PeerFailureBurst: 3, PeerFailureQPS: 0.5})
	steps := []struct {
		name        string
		peer, token string
		advance     time.Duration
		wantCode    codes.Code
		wantReviews int32
	}{
		{name: "admitted before the failures", peer: "10.0.3.1", token: "agent:n1", wantCode: codes.OK, wantReviews: 1},
		{name: "failure 1", peer: "10.0.3.1", token: "junk-1", wantCode: codes.Unauthenticated, wantReviews: 2},
		{name: "failure 2", peer: "10.0.3.1", token: "junk-2", wantCode: codes.Unauthenticated, wantReviews: 3},
		{name: "failure 3", peer: "10.0.3.1", token: "junk-3", wantCode: codes.Unauthenticated, wantReviews: 4},
		{name: "over budget: no review", peer: "10.0.3.1", token: "junk-4", wantCode: codes.ResourceExhausted, wantReviews: 4},
		{name: "over budget: a new valid token waits too", peer: "10.0.3.1", token: "agent:n2", wantCode: codes.ResourceExhausted, wantReviews: 4},
		{name: "over budget: a cached admission still admits", peer: "10.0.3.1", token: "agent:n1", wantCode: codes.OK, wantReviews: 4},
		{name: "over budget: a cached refusal still refuses", peer: "10.0.3.1", token: "junk-1", wantCode: codes.Unauthenticated, wantReviews: 4},
		{name: "another peer is not affected", peer: "10.0.3.2", token: "junk-5", wantCode: codes.Unauthenticated, wantReviews: 5},
		{name: "the budget refills", peer: "10.0.3.1", token: "agent:n2", advance: 2 * time.Second, wantCode: codes.OK, wantReviews: 6},
		{name: "one failure refilled, spent", peer: "10.0.3.1", token: "junk-6", wantCode: codes.Unauthenticated, wantReviews: 7},
		{name: "over budget again", peer: "10.0.3.1", token: "junk-7", wantCode: codes.ResourceExhausted, wantReviews: 7},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		_, err := a.Agent(from(st.peer), st.token)
		if got := status.Code(err); got != st.wantCode {
			t.Errorf("%s: code %v (%v), want %v", st.name, got, err, st.wantCode)
		}
		if got := f.reviews.Load(); got != st.wantReviews {
			t.Errorf("%s: %d reviews, want %d", st.name, got, st.wantReviews)
		}
	}
}

// A caller that hangs up does not escape its peer's budget: its review
// stays in flight for the peer, and its failure is charged.
func TestPeerFailureBudgetHangUp(t *testing.T) {
	now := time.Unix(1_000_000, 0) // no refill
	f := &fakeAPI{delay: 50 * time.Millisecond}
	a := newAuthLimits(t, f, func() time.Time { return now }, Limits{PeerFailureBurst: 3})
	var wg sync.WaitGroup
	for i := range 20 {
		ctx, cancel := context.WithCancel(from("10.0.4.1"))
		wg.Go(func() { _, _ = a.Agent(ctx, fmt.Sprintf("junk-%d", i)) })
		cancel()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the reviews end
	_, err := a.Agent(from("10.0.4.1"), "junk-last")
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Errorf("after 20 hung-up calls: code %v (%v), want ResourceExhausted", got, err)
	}
	if got := f.reviews.Load(); got > 3 {
		t.Errorf("%d reviews for hung-up calls, want at most the budget of 3", got)
	}
}

// Waiting reviews of clean peers go before those of suspect peers;
// callers that gave up are skipped.
func TestGateOrder(t *testing.T) {
	g := newGate(1, 1, time.Second)
	add := func(p priority) *waiter {
		w := &waiter{ready: make(chan struct{})}
		g.queues[p] = append(g.queues[p], w)
		g.live[p]++
		return w
	}
	s1, s2 := add(suspect), add(suspect)
	c1 := add(clean)
	s3 := add(suspect)
	c2 := add(clean)
	s2.gone = true
	g.live[suspect]--
	names := map[*waiter]string{s1: "s1", s2: "s2", s3: "s3", c1: "c1", c2: "c2"}
	var got []string
	for {
		w, _ := g.next()
		if w == nil {
			break
		}
		got = append(got, names[w])
	}
	if diff := cmp.Diff([]string{"c1", "c2", "s1", "s3"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func TestTokenExpiry(t *testing.T) {
	tests := []struct {
		name  string
		token string
		want  time.Time
	}{
		{name: "exp", token: jwt("n1", 1_900_000_000), want: time.Unix(1_900_000_000, 0)},
		{name: "no exp", token: jwt("n1", 0)},
		{name: "not a jwt", token: "garbage"},
		{name: "bad base64", token: "a.!!!.c"},
		{name: "not json", token: "a.bm90IGpzb24.c"},
		{name: "exp a string", token: "a.eyJleHAiOiJ0b21vcnJvdyJ9.c"},
		{name: "negative exp", token: "a.eyJleHAiOi0xfQ.c"},
		{name: "fractional exp", token: "a.eyJleHAiOjEuNX0.c", want: time.Unix(1, 5e8)},
		{name: "under a second", token: "a.eyJleHAiOjAuNX0.c", want: time.Unix(0, 5e8)},
		{name: "padded", token: "a.eyJleHAiOjEwfQ==.c", want: time.Unix(10, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tokenExpiry(tt.token); !got.Equal(tt.want) {
				t.Errorf("tokenExpiry = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzTokenExpiry(f *testing.F) {
	f.Add(jwt("n1", 1_900_000_000))
	f.Add("a.eyJleHAiOjEuNX0.c")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, token string) {
		if exp := tokenExpiry(token); !exp.IsZero() && !exp.After(time.Unix(0, 0)) {
			t.Errorf("tokenExpiry(%q) = %v: not after 1970", token, exp)
		}
	})
}

// waitingAgentServer sends one update, then holds the stream until its
// context ends, as the control plane's Sync does.
type waitingAgentServer struct {
	doormanv1.UnimplementedAgentServiceServer
}

func (waitingAgentServer) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	if err := stream.Send(&doormanv1.SyncResponse{Version: 1}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// A stream ends when the token it was admitted with expires, with
// Unauthenticated and a message that says so; never sooner than
// MinStreamLife after it opened.
func TestStreamEndsAtTokenExpiry(t *testing.T) {
	tests := []struct {
		name     string
		token    func() string
		minLife  time.Duration
		atLeast  time.Duration
		wantCode codes.Code
	}{
		{name: "expires in a second", token: func() string { return jwt("n1", time.Now().Add(time.Second).Unix()+1) }, minLife: time.Millisecond, atLeast: time.Second, wantCode: codes.Unauthenticated},
		{name: "already expired by this clock", token: func() string { return jwt("n1", time.Now().Add(-time.Hour).Unix()) }, minLife: 500 * time.Millisecond, atLeast: 500 * time.Millisecond, wantCode: codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAuthLimits(t, &fakeAPI{}, nil, Limits{MinStreamLife: tt.minLife})
			cc := serveWith(t, a, func(gs *grpc.Server) { doormanv1.RegisterAgentServiceServer(gs, waitingAgentServer{}) })
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			stream, err := doormanv1.NewAgentServiceClient(cc).Sync(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tt.token()))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n1"}}}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("first update: %v", err)
			}
			_, err = stream.Recv()
			lived := time.Since(start)
			if got := status.Code(err); got != tt.wantCode || !strings.Contains(err.Error(), "expired") {
				t.Fatalf("stream ended with %v (%v), want %v saying the token expired", got, err, tt.wantCode)
			}
			if lived < tt.atLeast {
				t.Errorf("stream lived %s, want at least %s", lived, tt.atLeast)
			}
			t.Logf("stream ended after %s: %v", lived.Round(time.Millisecond), err)
		})
	}
}
