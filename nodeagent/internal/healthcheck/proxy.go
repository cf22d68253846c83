package healthcheck

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"k8s.io/utils/clock"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// DefaultTimeout is how long a received update (or an armed drift repair)
// may wait for the kernel before /healthz reports the agent unhealthy:
// kube-proxy's health timeout, twice its default sync period of 30 s.
const DefaultTimeout = 60 * time.Second

// Proxy is the agent's own health, judged as kube-proxy judges its own:
// healthy unless work has waited longer than the timeout. Work is queued
// when an update from the control plane is received or a drift repair is
// armed, and done when the kernel commits (or the agent answers an update
// without needing the kernel). It keeps its own state, updated by the
// agent's callers, so that no health request waits for the agent: an
// update may hold the agent for a long Sync.
//
// Proxy is safe for concurrent use.
type Proxy struct {
	clock   clock.PassiveClock
	timeout time.Duration

	mu sync.Mutex
	// lastUpdated: the last time the agent was done with all it had
	// queued; zero until the first time.
	lastUpdated time.Time
	// oldestQueued: when the oldest work not yet done was queued; zero
	// when there is none.
	oldestQueued time.Time
	// programmed: the kernel holds a view (from the cache or the stream).
	programmed bool
	// eligible: the Node entry of the view the kernel holds says the
	// node may receive load-balanced traffic (see Eligible).
	eligible bool
}

// NewProxy returns a Proxy that reports unhealthy once work has waited
// longer than timeout (DefaultTimeout when not positive).
func NewProxy(c clock.PassiveClock, timeout time.Duration) *Proxy {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Proxy{clock: c, timeout: timeout}
}

// QueuedUpdate records that work arrived: an update was received, or a
// drift repair was armed. Only the oldest pending time is kept.
func (p *Proxy) QueuedUpdate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.oldestQueued.IsZero() {
		p.oldestQueued = p.clock.Now()
	}
}

// QueuedRepair records that a drift repair was armed, when the kernel
// holds a view: with none, the resync does nothing (the first update
// programs the kernel), so nothing waits.
func (p *Proxy) QueuedRepair() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.programmed && p.oldestQueued.IsZero() {
		p.oldestQueued = p.clock.Now()
	}
}

// Programmed records that a kernel transaction committed the agent's view:
// everything queued is done, and the kernel holds a view.
func (p *Proxy) Programmed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.programmed = true
	p.done()
}

// Answered records that the agent answered an update without needing the
// kernel (nothing to change, or refused before the kernel): what was
// queued is done.
func (p *Proxy) Answered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done()
}

// SetNode records the Node entry of the view a kernel transaction
// committed; nil when that view has none (the control plane has no Node
// object for this node).
func (p *Proxy) SetNode(n *doormanv1.Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eligible = Eligible(n)
}

// Eligible is kube-proxy's node eligibility: a Node object exists, is not
// being deleted and is not tainted ToBeDeletedByClusterAutoscaler. A
// node that is going away answers /healthz with 503, so that cloud load
// balancers stop sending to it before it goes.
func Eligible(n *doormanv1.Node) bool {
	return n != nil && !n.GetDeleting() && !n.GetToBeDeleted()
}

func (p *Proxy) done() {
	p.oldestQueued = time.Time{}
	p.lastUpdated = p.clock.Now()
}

// Status is the agent's health at one moment.
type Status struct {
	// Live: no work has waited longer than the timeout (kube-proxy's
	// /livez rule).
	Live bool
	// Healthy: live, and the kernel holds a view.
	Healthy bool
	// NodeEligible: the view the kernel holds has a Node entry, and it is
	// not going away (Eligible). /healthz answers 200 only when Healthy
	// and NodeEligible; /livez ignores eligibility.
	NodeEligible bool
	// LastUpdated is when the agent was last done with its work (zero
	// before the first time); CurrentTime is now.
	LastUpdated, CurrentTime time.Time
}

// Status returns the health now.
func (p *Proxy) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	live := p.oldestQueued.IsZero() || now.Sub(p.oldestQueued) < p.timeout
	return Status{Live: live, Healthy: live && p.programmed, NodeEligible: p.eligible, LastUpdated: p.lastUpdated, CurrentTime: now}
}

// proxyHealth is kube-proxy's /healthz and /livez body.
type proxyHealth struct {
	LastUpdated  time.Time `json:"lastUpdated"`
	CurrentTime  time.Time `json:"currentTime"`
	NodeEligible *bool     `json:"nodeEligible,omitempty"`
	Healthy      bool      `json:"healthy"`
}

// Handler serves /healthz (200 while Healthy and NodeEligible, 503
// otherwise) and /livez (200 while Live) with kube-proxy's JSON body, so
// that probes, load balancers and tools written for kube-proxy keep
// working. As kube-proxy does, a healthy answer gives lastUpdated as the
// current time (older releases reported the last sync loop run, which was
// always recent); an unhealthy one gives the real last update. The body's
// healthy leaves eligibility out, and nodeEligible (in /healthz only)
// gives it, as in kube-proxy's answer.
func (p *Proxy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		s := p.Status()
		eligible := s.NodeEligible
		writeHealth(w, s.Healthy && eligible, proxyHealth{LastUpdated: s.LastUpdated, CurrentTime: s.CurrentTime, NodeEligible: &eligible, Healthy: s.Healthy})
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		s := p.Status()
		writeHealth(w, s.Live, proxyHealth{LastUpdated: s.LastUpdated, CurrentTime: s.CurrentTime, Healthy: s.Live})
	})
	return mux
}

func writeHealth(w http.ResponseWriter, ok bool, body proxyHealth) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if ok {
		body.LastUpdated = body.CurrentTime
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}
