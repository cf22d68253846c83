package hub

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/view"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// ErrClosed is returned once the hub is shutting down.
var ErrClosed = errors.New("control plane shutting down")

// Config configures a Hub.
type Config struct {
	NodePortAddresses model.NodePortAddresses
	VersionSeed       uint64
	LogLimit          int // change records kept; 0: view.DefaultLogLimit
	Logger            hclog.Logger
	// Freshness, when set, returns the informers' freshness marker (how
	// far each watched resource has been read); every update carries it as
	// taken once the update is made.
	Freshness func() map[string]wire.Versions
	// Events, when set, receives what Services' authors should see: a
	// Service that lost an address to another, a Service refused.
	Events Events
	// Load computes no Service until MarkReady, which computes each
	// changed one once, on every CPU (see model.Defer): the initial lists
	// would otherwise compute a Service once per object.
	Load bool
	// EndpointsByNode sends the ports of Services with a Local traffic
	// policy by node (model.PortsByNode): their cost grows with nodes plus
	// endpoints, not nodes times endpoints. Only agents of protocol
	// version.ByNodeProtocol and later are served.
	EndpointsByNode bool
}

// Hub owns the model, the view and the differ.
type Hub struct {
	log       hclog.Logger
	nodePorts model.NodePortAddresses
	freshness func() map[string]wire.Versions
	events    Events

	mu     sync.Mutex
	model  *model.Model
	view   *view.View
	differ *differ.Differ
	wake   map[differ.Token]chan struct{}
	// nodes are the valid Nodes' entries without the Service CIDRs, which
	// serviceCIDRs adds to each when it sets it (and again when they
	// change).
	nodes        map[string]*doormanv1.Node
	serviceCIDRs *model.ServiceCIDRs

	ready     chan struct{}
	readyOnce sync.Once
	closed    chan struct{}
	closeOnce sync.Once
}

// New returns a Hub.
func New(cfg Config) *Hub {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	v := view.New(cfg.VersionSeed, cfg.LogLimit)
	m := model.New()
	if cfg.Load {
		m.Defer()
	}
	d := differ.New(v)
	if cfg.EndpointsByNode {
		m.EndpointsByNode()
		d.Serve(version.ByNodeServed)
	}
	return &Hub{
		log:       log,
		nodePorts: cfg.NodePortAddresses,
		freshness: cfg.Freshness,
		events:    cfg.Events,
		model:     m,
		view:      v,
		differ:    d,
		wake:      map[differ.Token]chan struct{}{},
		nodes:     map[string]*doormanv1.Node{},
		ready:     make(chan struct{}),
		closed:    make(chan struct{}),

		serviceCIDRs: model.NewServiceCIDRs(),
	}
}

// MarkReady is called once the informers have synced: it computes the
// Services held back by Config.Load, then sessions are served.
func (h *Hub) MarkReady() {
	h.readyOnce.Do(func() {
		h.mu.Lock()
		h.log.Info("informers synced")
		h.view.Reserve(h.model.Pending())
		h.model.Flush(h.apply)
		h.log.Info("views built", "version", h.view.Version(), "keys", h.view.Stats().Keys)
		h.mu.Unlock()
		close(h.ready)
	})
}

// Ready reports whether the informers have synced.
func (h *Hub) Ready() bool {
	select {
	case <-h.ready:
		return true
	default:
		return false
	}
}

// Close makes every session end.
func (h *Hub) Close() { h.closeOnce.Do(func() { close(h.closed) }) }

// Closed is closed when the hub shuts down.
func (h *Hub) Closed() <-chan struct{} { return h.closed }

// SetService feeds a Service add or update.
func (h *Hub) SetService(svc *corev1.Service) { h.SetCompactService(compact.FromService(svc)) }

// SetCompactService feeds a Service add or update in its compact form,
// which the hub keeps.
func (h *Hub) SetCompactService(svc *compact.Service) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.model.SetCompactService(svc) {
		h.apply(r)
	}
}

// DeleteService feeds a Service deletion.
func (h *Hub) DeleteService(namespace, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.model.DeleteService(namespace, name) {
		h.apply(r)
	}
}

// SetSlice feeds an EndpointSlice add or update.
func (h *Hub) SetSlice(s *discoveryv1.EndpointSlice) { h.SetCompactSlice(compact.FromSlice(s)) }

// SetCompactSlice feeds an EndpointSlice add or update in its compact
// form, which the hub keeps.
func (h *Hub) SetCompactSlice(s *compact.Slice) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.model.SetCompactSlice(s) {
		h.apply(r)
	}
}

// DeleteSlice feeds an EndpointSlice deletion.
func (h *Hub) DeleteSlice(namespace, name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.model.DeleteSlice(namespace, name) {
		h.apply(r)
	}
}

// SetNode feeds a Node add or update. An invalid Node is logged and loses
// its node entry.
func (h *Hub) SetNode(n *corev1.Node) {
	value, err := model.Node(n, h.nodePorts)
	if err != nil {
		h.log.Error("skipping invalid node", "node", n.Name, "error", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if value == nil {
		delete(h.nodes, n.Name)
	} else {
		h.nodes[n.Name] = value
	}
	if h.setNode(n.Name, value) {
		h.notifyAll()
	}
}

// DeleteNode feeds a Node deletion.
func (h *Hub) DeleteNode(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.nodes, name)
	if h.setNode(name, nil) {
		h.notifyAll()
	}
	h.differ.Forget(name)
}

// SetServiceCIDR feeds a ServiceCIDR add or update. A CIDR that does not
// parse is logged and skipped; the object's others count.
func (h *Hub) SetServiceCIDR(c *networkingv1.ServiceCIDR) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed, err := h.serviceCIDRs.Set(c)
	if err != nil {
		h.log.Error("skipping invalid service CIDRs", "servicecidr", c.Name, "error", err)
	}
	if changed {
		h.serviceCIDRsChanged()
	}
}

// DeleteServiceCIDR feeds a ServiceCIDR deletion.
func (h *Hub) DeleteServiceCIDR(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.serviceCIDRs.Delete(name) {
		h.serviceCIDRsChanged()
	}
}

// serviceCIDRsChanged gives every node's entry the new union, waking the
// sessions once.
func (h *Hub) serviceCIDRsChanged() {
	h.log.Info("service CIDRs changed", "cidrs", h.serviceCIDRs.List(), "nodes", len(h.nodes))
	changed := false
	for name, value := range h.nodes {
		changed = h.setNode(name, value) || changed
	}
	if changed {
		h.notifyAll()
	}
}

// setNode sets a node's entry (nil: none) with the Service CIDRs added,
// and reports whether the node's view changed.
func (h *Hub) setNode(name string, value *doormanv1.Node) bool {
	changed, err := h.view.SetNode(name, model.NodeWithServiceCIDRs(value, h.serviceCIDRs.List()))
	if err != nil {
		h.log.Error("cannot encode node", "node", name, "error", err)
		return false
	}
	if changed {
		h.log.Debug("node changed", "node", name, "version", h.view.Version())
	}
	return changed
}

func (h *Hub) apply(r model.Result) {
	if r.Err != nil {
		h.log.Error("skipping invalid objects", "service", r.Service, "error", r.Err)
	}
	h.report(r)
	changed, err := h.view.SetService(r.Service, r.Values)
	if err != nil {
		h.log.Error("cannot encode service", "service", r.Service, "error", err)
		return
	}
	if changed {
		h.log.Debug("service changed", "service", r.Service, "keys", len(r.Values), "version", h.view.Version())
		h.notifyAll()
	}
}

// notifyAll wakes the sessions that have something to send. One with an
// update in flight is woken by its Ack, and then sends every change made
// meanwhile at once: under churn, waking it for each change would only
// make it take the lock to find nothing to send, once per change and
// node.
func (h *Hub) notifyAll() {
	for t, ch := range h.wake {
		if h.differ.Due(t) {
			notify(ch)
		}
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Session is one node's stream as the hub sees it.
type Session struct {
	h     *Hub
	token differ.Token
	wake  chan struct{}
	// protocol is the agent's stream protocol (version.AgentProtocol).
	protocol uint32
	// marked is the freshness marker the agent holds from this stream:
	// from protocol version.MovedFreshnessProtocol on, an update carries
	// only the resources whose versions moved since (see NextUpdate).
	marked map[string]wire.Versions
}

// Open waits until the informers have synced, then starts a session for
// the node that sent the Hello.
func (h *Hub) Open(ctx context.Context, hello *doormanv1.Hello) (*Session, error) {
	select {
	case <-h.ready:
	case <-h.closed:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t, err := h.differ.Hello(hello)
	if err != nil {
		return nil, err
	}
	s := &Session{h: h, token: t, wake: make(chan struct{}, 1), protocol: version.AgentProtocol(hello.GetProtocol())}
	// A session this Hello replaced is stale now: wake it so its stream
	// learns so (Next returns differ.ErrStale) and ends, rather than
	// idling until the agent closes it.
	for old, ch := range h.wake {
		if old.Node == t.Node {
			notify(ch)
		}
	}
	h.wake[t] = s.wake
	notify(s.wake)
	h.log.Info("node connected", "node", t.Node, "session", t.ID, "holding_version", hello.GetHolding().GetVersion(), "agent_version", hello.GetAgentVersion())
	return s, nil
}

// Node is the session's node name.
func (s *Session) Node() string { return s.token.Node }

// Wake receives when the session may have something to send.
func (s *Session) Wake() <-chan struct{} { return s.wake }

// NextUpdate returns the update to send now, or nil; the caller encodes
// it (outside the hub's lock: entries are immutable).
func (s *Session) NextUpdate() (*wire.Update, error) {
	s.h.mu.Lock()
	u, err := s.h.differ.Next(s.token)
	s.h.mu.Unlock()
	if err != nil || u == nil {
		return nil, err
	}
	// Taken after the update: the informers had read at least this far
	// when it was made (see watch.Freshness). An agent that keeps the
	// marker of its stream gets only what moved: most updates follow one
	// resource's change, and four resources' versions in every update
	// were about 100 bytes of each node's share of a change.
	if s.h.freshness != nil {
		now := s.h.freshness()
		u.Freshness = now
		if s.protocol >= version.MovedFreshnessProtocol && s.marked != nil {
			u.Freshness = wire.Moved(s.marked, now)
		}
		s.marked = wire.Merged(s.marked, u.Freshness)
	}
	s.h.log.Debug("sending update", "node", s.token.Node, "version", u.Version, "full", u.Full,
		"replaced_buckets", len(u.ReplacedBuckets), "upserts", len(u.Upserts), "removals", len(u.Removals), "freshness", u.Freshness)
	return u, nil
}

// Ack records an Ack.
func (s *Session) Ack(a *doormanv1.Ack) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if err := s.h.differ.Ack(s.token, a); err != nil {
		return err
	}
	s.h.log.Debug("update acknowledged", "node", s.token.Node, "version", a.GetVersion())
	if np := a.GetNotProgrammed(); len(np) > 0 {
		s.h.log.Warn("node could not program keys", "node", s.token.Node, "version", a.GetVersion(), "keys", np)
	}
	notify(s.wake)
	return nil
}

// Nack records a Nack; nothing is resent until the next change.
func (s *Session) Nack(n *doormanv1.Nack) error {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if err := s.h.differ.Nack(s.token, n); err != nil {
		return err
	}
	s.h.log.Warn("update rejected", "node", s.token.Node, "version", n.GetVersion(), "error", doormanv1.CutText(n.GetError(), doormanv1.MaxNackText))
	notify(s.wake)
	return nil
}

// Close ends the session.
func (s *Session) Close() {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	delete(s.h.wake, s.token)
	s.h.differ.Close(s.token)
	s.h.log.Info("node disconnected", "node", s.token.Node, "session", s.token.ID)
}

// NodeEntries is one node's entries, for Inspect.
type NodeEntries struct {
	Node       string
	Version    uint64
	ViewDigest uint64
	Entries    []*wire.Entry
}

// Nodes returns the newest version and every node's status.
func (h *Hub) Nodes() (uint64, []differ.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.view.Version(), h.differ.Status()
}

// NodeView returns a node's current view.
func (h *Hub) NodeView(name string) (NodeEntries, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	entries, err := h.view.Entries(name)
	if err != nil {
		return NodeEntries{}, err
	}
	return NodeEntries{Node: name, Version: h.view.Version(), ViewDigest: h.view.Digest(name), Entries: entries}, nil
}

// Service returns one Service's entries on every tracked node.
func (h *Hub) Service(namespace, name string) ([]NodeEntries, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	keys := h.view.ServiceKeys(namespace + "/" + name)
	if len(keys) == 0 {
		return nil, fmt.Errorf("service %s/%s: %w", namespace, name, ErrNoService)
	}
	var out []NodeEntries
	for _, node := range h.view.Nodes() {
		ne := NodeEntries{Node: node}
		for _, k := range keys {
			if e := h.view.Lookup(node, k); e != nil {
				ne.Entries = append(ne.Entries, e)
			}
		}
		out = append(out, ne)
	}
	return out, nil
}

// ErrNoService is returned by Service for a Service with no entries.
var ErrNoService = errors.New("no entries for service")

// Stats returns the view's counters.
func (h *Hub) Stats() view.Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.view.Stats()
}
