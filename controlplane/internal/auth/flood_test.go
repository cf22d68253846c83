package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reviewLog records the tokens the fake API server reviewed, in order.
type reviewLog struct {
	mu     sync.Mutex
	tokens []string
}

func (l *reviewLog) add(token string) {
	l.mu.Lock()
	l.tokens = append(l.tokens, token)
	l.mu.Unlock()
}

func (l *reviewLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tokens)
}

// index is the position of token's first review, or -1.
func (l *reviewLog) index(token string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, t := range l.tokens {
		if t == token {
			return i
		}
	}
	return -1
}

func (l *reviewLog) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.tokens {
		if strings.HasPrefix(t, prefix) {
			n++
		}
	}
	return n
}

// flood is peers presenting invalid tokens to an Authenticator, each from
// its own address with several workers, until it ends.
type flood struct {
	presented atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
	start     time.Time
}

// startFlood starts peers×workers workers presenting token(n) for n = 1,
// 2, …, each pausing between tokens; a refusal with another code than
// refused fails the test.
func startFlood(t *testing.T, a *Authenticator, peers, workers int, pause time.Duration, token func(n int64) string, refused ...codes.Code) *flood {
	t.Helper()
	f := &flood{stop: make(chan struct{}), start: time.Now()}
	for p := range peers {
		for range workers {
			f.wg.Go(func() {
				ctx := from(fmt.Sprintf("10.2.0.%d", p+1))
				for {
					select {
					case <-f.stop:
						return
					default:
					}
					n := f.presented.Add(1)
					_, err := a.Agent(ctx, token(n))
					if !slices.Contains(refused, status.Code(err)) {
						t.Errorf("junk token %d: %v", n, err)
					}
					time.Sleep(pause)
				}
			})
		}
	}
	return f
}

// waitPresented waits, polling every poll, until n tokens were presented.
func (f *flood) waitPresented(n int64, poll time.Duration) {
	for f.presented.Load() < n {
		time.Sleep(poll)
	}
}

// end stops the workers and returns how long the flood lasted.
func (f *flood) end() time.Duration {
	close(f.stop)
	f.wg.Wait()
	return time.Since(f.start)
}

// TestJunkFloodDoesNotStarveAgents: while many peers present thousands of
// distinct invalid tokens, an agent connecting for the first time is
// admitted after at most one review per junk peer (plus the reviews the
// burst had already let through), and agents admitted before the flood
// stay admitted without a review. Bounds are counted in reviews, not in
// wall time.
func TestJunkFloodDoesNotStarveAgents(t *testing.T) {
	const (
		qps, burst     = 200, 20
		junkPeers      = 50
		workersPerPeer = 10
		minJunk        = 5000 // distinct invalid tokens presented, at least
		cachedAgents   = 50
	)
	for _, arrival := range []string{"with the flood", "during the flood"} {
		t.Run(arrival, func(t *testing.T) {
			log := &reviewLog{}
			f := &fakeAPI{delay: time.Millisecond, reviewed: log.add}
			limits := Limits{ReviewQPS: qps, ReviewBurst: burst, SuccessCacheSize: 2 * cachedAgents, FailureCacheSize: 1024}
			a := newAuthLimits(t, f, nil, limits)
			for i := range cachedAgents {
				if _, err := a.Agent(from(fmt.Sprintf("10.1.0.%d", i+1)), fmt.Sprintf("agent:cached-%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Duration(burst) * time.Second / qps) // the burst refills

			fl := startFlood(t, a, junkPeers, workersPerPeer, 5*time.Millisecond,
				func(n int64) string { return fmt.Sprintf("junk-%d", n) },
				codes.Unauthenticated, codes.ResourceExhausted, codes.Unavailable)
			if arrival == "during the flood" {
				fl.waitPresented(minJunk/2, 10*time.Millisecond)
			}

			before := log.len()
			t0 := time.Now()
			adm, err := a.Agent(from("10.3.0.1"), "agent:new")
			took := time.Since(t0)
			if err != nil || adm.Node != "new" {
				t.Fatalf("agent admitted as %+v, %v", adm, err)
			}
			ahead := log.index("agent:new") - before
			fl.waitPresented(minJunk, 10*time.Millisecond)
			elapsed := fl.end()

			// The bound: one review per junk peer (its first, before it
			// failed), plus the burst already let through.
			if bound := junkPeers + burst + 1; ahead > bound {
				t.Errorf("%d reviews went before the agent's, want at most %d (one per junk peer + burst + 1)", ahead, bound)
			}
			// Junk reviews: each peer's failure budget, plus its refill.
			junkReviews := log.count("junk-")
			refill := int(elapsed.Seconds()*DefaultPeerFailureQPS) + 1
			if bound := junkPeers * (DefaultPeerFailureBurst + refill); junkReviews > bound {
				t.Errorf("%d junk tokens reviewed, want at most %d (%d peers × (burst %d + refill %d))", junkReviews, bound, junkPeers, DefaultPeerFailureBurst, refill)
			}
			// Every agent admitted before the flood is still cached.
			reviews := f.reviews.Load()
			for i := range cachedAgents {
				if _, err := a.Agent(from(fmt.Sprintf("10.1.0.%d", i+1)), fmt.Sprintf("agent:cached-%d", i)); err != nil {
					t.Errorf("cached agent %d after the flood: %v", i, err)
				}
			}
			if got := f.reviews.Load() - reviews; got != 0 {
				t.Errorf("%d reviews to admit the agents cached before the flood again, want 0", got)
			}
			if got := a.Stats().AdmittedEvicted; got != 0 {
				t.Errorf("%d admissions evicted, want 0", got)
			}
			t.Logf("%d invalid tokens from %d peers in %s: %d reviewed; the agent's review had %d ahead of it, admitted in %s",
				fl.presented.Load(), junkPeers, elapsed.Round(time.Millisecond), junkReviews, ahead, took.Round(time.Millisecond))
		})
	}
}

// TestAdmissionStorm: every agent reconnects at once (a control-plane
// restart); each retries as the agent does (backoff 100 ms doubling to
// 5 s, jittered) when told the reviews are busy. Each token is reviewed
// once, and all are admitted in about agents/ReviewQPS. The rate is
// scaled up here; the log line gives the figure at the defaults.
func TestAdmissionStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("admits 5,000 agents")
	}
	const agents, qps, burst = 5000, 2000, 100
	f := &fakeAPI{}
	a := newAuthLimits(t, f, nil, Limits{ReviewQPS: qps, ReviewBurst: burst, ReviewTimeout: time.Second})
	var wg sync.WaitGroup
	var retries atomic.Int64
	start := time.Now()
	for i := range agents {
		wg.Go(func() {
			ctx := from(fmt.Sprintf("10.4.%d.%d", i/250, i%250+1))
			backoff := 100 * time.Millisecond
			for {
				_, err := a.Agent(ctx, fmt.Sprintf("agent:n%d", i))
				if err == nil {
					return
				}
				if status.Code(err) != codes.Unavailable {
					t.Errorf("agent %d: %v", i, err)
					return
				}
				retries.Add(1)
				time.Sleep(backoff/2 + time.Duration(rand.Float64()*float64(backoff/2)))
				backoff = min(2*backoff, 5*time.Second)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if got := f.reviews.Load(); got != agents {
		t.Errorf("%d reviews for %d agents, want one each", got, agents)
	}
	ideal := time.Duration(float64(agents-burst) / qps * float64(time.Second))
	if elapsed < ideal*9/10 {
		t.Errorf("%d agents admitted in %s, faster than %d/s allows (%s)", agents, elapsed, qps, ideal)
	}
	atDefaults := time.Duration(float64(agents-DefaultReviewBurst) / DefaultReviewQPS * float64(time.Second))
	t.Logf("%d agents admitted in %s at %d/s, burst %d (the limiter alone: %s; overhead %s), %d busy refusals retried; at the defaults (%d/s, burst %d): %s + the overhead",
		agents, elapsed.Round(time.Millisecond), qps, burst, ideal, (elapsed - ideal).Round(time.Millisecond), retries.Load(),
		DefaultReviewQPS, DefaultReviewBurst, atDefaults)
}

// TestJunkSignatureFloodDoesNotStarveAgents: many peers present
// thousands of distinct tokens that name the API server's issuer and
// key but are signed with another key, each costing a signature check.
// Each peer's failure budget bounds the checks, and an agent connecting
// meanwhile is admitted locally, without a review.
func TestJunkSignatureFloodDoesNotStarveAgents(t *testing.T) {
	const (
		junkPeers      = 50
		workersPerPeer = 10
		minJunk        = 5000
	)
	now := time.Now()
	fx := newLocalFixture(t, newIssuerServer(t, rsaKey), LocalConfig{}, Limits{}, agentPod("new"))
	a := fx.auth
	// Distinct tokens, so that the refusal cache does not absorb them:
	// the claims change, the signature stays that of other claims.
	parts := strings.Split(otherKey.sign(t, claimsFor("new", now)), ".")
	junkToken := func(n int64) string {
		claims := claimsFor("new", now)
		claims["jti"] = fmt.Sprint(n)
		b, _ := json.Marshal(claims)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	}
	fl := startFlood(t, a, junkPeers, workersPerPeer, 0, junkToken, codes.Unauthenticated, codes.ResourceExhausted)
	fl.waitPresented(minJunk/2, time.Millisecond)
	t0 := time.Now()
	adm, err := a.Agent(from("10.3.0.1"), rsaKey.sign(t, claimsFor("new", now)))
	took := time.Since(t0)
	if err != nil || adm.Node != "new" {
		t.Fatalf("agent admitted as %+v, %v", adm, err)
	}
	fl.waitPresented(minJunk, time.Millisecond)
	elapsed := fl.end()
	checked := int(a.Stats().SignaturesChecked)
	refill := int(elapsed.Seconds()*DefaultPeerFailureQPS) + 1
	if bound := junkPeers*(DefaultPeerFailureBurst+refill) + 1; checked > bound {
		t.Errorf("%d signatures checked, want at most %d (%d peers × (burst %d + refill %d) + the agent's)", checked, bound, junkPeers, DefaultPeerFailureBurst, refill)
	}
	if got := fx.api.reviews.Load(); got != 0 {
		t.Errorf("%d token reviews, want 0", got)
	}
	t.Logf("%d junk tokens from %d peers in %s: %d signatures checked; the agent was admitted in %s",
		fl.presented.Load(), junkPeers, elapsed.Round(time.Millisecond), checked, took.Round(time.Microsecond))
}
