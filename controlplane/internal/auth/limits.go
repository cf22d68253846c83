package auth

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
	"k8s.io/utils/lru"
)

// Defaults of Limits, after Kubernetes' own where it has one: the
// kubelet's API client (50 QPS, burst 100) and the API server's delegated
// authentication (reviews time out after 10 s, refusals are cached 10 s).
const (
	DefaultSuccessTTL       = 30 * time.Second
	DefaultFailureTTL       = 10 * time.Second
	DefaultSuccessCacheSize = 16384
	DefaultFailureCacheSize = 4096
	DefaultReviewQPS        = 50
	DefaultReviewBurst      = 100
	DefaultReviewTimeout    = 10 * time.Second
	DefaultPeerFailureQPS   = 0.2
	DefaultPeerFailureBurst = 10
	DefaultMinStreamLife    = 10 * time.Second
)

// peerTableSize bounds the per-peer budgets kept; the least recently seen
// peer's budget goes first (it starts afresh if the peer comes back).
const peerTableSize = 16384

// Limits bound what admission costs the API server, and what any one
// caller can take of it. Zero fields take the defaults.
type Limits struct {
	// SuccessTTL is how long an admission is reused, never past the
	// token's own expiry (default 30 s; negative: admissions are not
	// cached).
	SuccessTTL time.Duration
	// FailureTTL is how long a refusal is reused (default 10 s; negative:
	// refusals are not cached).
	FailureTTL time.Duration
	// SuccessCacheSize and FailureCacheSize bound the two caches, each
	// least recently used first out (defaults 16,384 and 4,096).
	// Refusals have a cache of their own: no number of invalid tokens
	// pushes an admission out.
	SuccessCacheSize, FailureCacheSize int
	// ReviewQPS and ReviewBurst bound the TokenReviews and
	// SubjectAccessReviews sent to the API server (defaults 50 and 100;
	// a negative ReviewQPS: no bound). Reviews that must wait are served
	// callers from peers with no recent failure first.
	ReviewQPS   float64
	ReviewBurst int
	// ReviewTimeout bounds how long a review waits for its turn, and then
	// how long the API server may take to answer it (default 10 s). A
	// review that would wait longer is refused at once (Unavailable).
	ReviewTimeout time.Duration
	// PeerFailureQPS and PeerFailureBurst are each remote address's
	// budget of failed reviews (defaults 0.2/s and 10; a negative burst:
	// no budget). A peer out of budget is refused without a review
	// (ResourceExhausted) unless its token's admission is cached.
	PeerFailureQPS   float64
	PeerFailureBurst int
	// MinStreamLife: a stream is ended when its token expires, but never
	// sooner than this after it was admitted (default 10 s), so that a
	// clock skew with the API server cannot become a reconnect loop.
	MinStreamLife time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.SuccessTTL == 0 {
		l.SuccessTTL = DefaultSuccessTTL
	}
	if l.FailureTTL == 0 {
		l.FailureTTL = DefaultFailureTTL
	}
	if l.SuccessCacheSize <= 0 {
		l.SuccessCacheSize = DefaultSuccessCacheSize
	}
	if l.FailureCacheSize <= 0 {
		l.FailureCacheSize = DefaultFailureCacheSize
	}
	if l.ReviewQPS == 0 {
		l.ReviewQPS = DefaultReviewQPS
	}
	if l.ReviewBurst <= 0 {
		l.ReviewBurst = DefaultReviewBurst
	}
	if l.ReviewTimeout <= 0 {
		l.ReviewTimeout = DefaultReviewTimeout
	}
	if l.PeerFailureQPS <= 0 {
		l.PeerFailureQPS = DefaultPeerFailureQPS
	}
	if l.PeerFailureBurst == 0 {
		l.PeerFailureBurst = DefaultPeerFailureBurst
	}
	if l.MinStreamLife <= 0 {
		l.MinStreamLife = DefaultMinStreamLife
	}
	return l
}

// priority orders the reviews that wait for their turn.
type priority int

const (
	// clean: the caller's peer has no recent failed review and no other
	// review in flight — an agent connecting, an operator's Inspect call.
	clean priority = iota
	// suspect: the peer failed recently or has several reviews in flight.
	suspect
)

// errBusy refuses a review that would wait longer than its timeout.
var errBusy = errors.New("too many reviews waiting: retry later")

// gate lets reviews go to the API server at a bounded rate. When they
// must wait, clean callers go first: invalid tokens from peers that
// already failed get only the capacity no one else wants.
type gate struct {
	lim     *rate.Limiter
	maxWait time.Duration

	mu      sync.Mutex
	queues  [2][]*waiter
	live    [2]int // waiters still waiting, per priority
	running bool   // the dispatcher runs
}

type waiter struct {
	ready   chan struct{}
	granted bool
	gone    bool
}

func newGate(qps float64, burst int, maxWait time.Duration) *gate {
	limit := rate.Limit(qps)
	if qps < 0 {
		limit = rate.Inf
	}
	return &gate{lim: rate.NewLimiter(limit, burst), maxWait: maxWait}
}

// wait returns once the caller may send one request, or errBusy when the
// queue ahead of it is longer than maxWait at the configured rate, or
// the wait took that long.
func (g *gate) wait(ctx context.Context, p priority) error {
	g.mu.Lock()
	if g.live[clean]+g.live[suspect] == 0 && g.lim.Allow() {
		g.mu.Unlock()
		return nil
	}
	ahead := g.live[clean]
	if p == suspect {
		ahead += g.live[suspect]
	}
	if float64(ahead) >= float64(g.lim.Limit())*g.maxWait.Seconds() {
		g.mu.Unlock()
		return errBusy
	}
	w := &waiter{ready: make(chan struct{})}
	g.queues[p] = append(g.queues[p], w)
	g.live[p]++
	if !g.running {
		g.running = true
		go g.dispatch()
	}
	g.mu.Unlock()

	timer := time.NewTimer(g.maxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = errBusy
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted {
		return nil
	}
	w.gone = true
	g.live[p]--
	return err
}

// dispatch hands out the limiter's tokens to the waiters, clean first,
// until none waits.
func (g *gate) dispatch() {
	for {
		g.mu.Lock()
		if g.live[clean]+g.live[suspect] == 0 {
			g.queues = [2][]*waiter{}
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		// Burst ≥ 1 and no deadline: Wait only waits.
		_ = g.lim.Wait(context.Background())
		g.mu.Lock()
		if w, p := g.next(); w != nil {
			w.granted = true
			g.live[p]--
			close(w.ready)
		}
		g.mu.Unlock()
	}
}

// next pops the first waiter still waiting, clean ones first.
func (g *gate) next() (*waiter, priority) {
	for _, p := range []priority{clean, suspect} {
		for len(g.queues[p]) > 0 {
			w := g.queues[p][0]
			g.queues[p][0] = nil
			g.queues[p] = g.queues[p][1:]
			if !w.gone {
				return w, p
			}
		}
	}
	return nil, clean
}

// peers keeps each remote address's budget of failed reviews.
type peers struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu    sync.Mutex
	table *lru.Cache // address → *budget
}

type budget struct {
	failures *rate.Limiter // a token per failure allowed
	inflight int           // reviews started and not yet ended
}

// newPeers returns the budgets, or nil (no budget) for a negative burst.
func newPeers(qps float64, burst int, now func() time.Time) *peers {
	if burst < 0 {
		return nil
	}
	return &peers{limit: rate.Limit(qps), burst: burst, now: now, table: lru.New(peerTableSize)}
}

func (p *peers) get(addr string) *budget {
	if v, ok := p.table.Get(addr); ok {
		return v.(*budget)
	}
	b := &budget{failures: rate.NewLimiter(p.limit, p.burst)}
	p.table.Add(addr, b)
	return b
}

// begin starts a review for a peer: refused when the peer's failures, and
// the reviews it has in flight (each may fail), leave no budget.
func (p *peers) begin(addr string) (priority, bool) {
	if p == nil {
		return clean, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.get(addr)
	left := b.failures.TokensAt(p.now()) - float64(b.inflight)
	if left < 1 {
		return suspect, false
	}
	b.inflight++
	if left < float64(p.burst) {
		return suspect, true
	}
	return clean, true
}

// end ends a review begun for a peer; a failed one spends its budget.
func (p *peers) end(addr string, failed bool) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.get(addr)
	if b.inflight > 0 {
		b.inflight--
	}
	if failed {
		b.failures.AllowN(p.now(), 1)
	}
}

// peerAddr is the caller's remote address without its port: one budget
// per host, whatever port it comes from.
func peerAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	s := p.Addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}
