package differ

import (
	"errors"
	"fmt"
	"slices"

	"github.com/doorman-proxy/doorman/controlplane/internal/view"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

var (
	// ErrStale is returned for a session another Hello of the same node
	// replaced, or one already closed.
	ErrStale = errors.New("session replaced or closed")
	// ErrInvalid is returned for a malformed message from an agent.
	ErrInvalid = errors.New("invalid message")
)

// Token names one session of one node.
type Token struct {
	Node string
	ID   uint64
}

type session struct {
	id uint64
	// What the node holds, as far as the control plane knows: nothing
	// (held is the zero value), or the view whose bucket digests are held.
	// When base is not 0 the node holds exactly the view of version base,
	// so what it lacks can be read from the change log.
	held view.Digests
	base uint64
	// resume: the update that answers the Hello is still to be sent.
	resume bool

	inFlight        uint64
	inFlightBuckets view.Digests
	inFlightDigest  uint64
	lastSent        uint64
}

// Status is what Inspect shows about a node.
type Status struct {
	Node      string
	Connected bool
	// Desired is the newest version that changed this node's view.
	Desired         uint64
	Acked           uint64
	InFlight        uint64
	LastNack        string
	LastNackVersion uint64
	// Keys the node said, in its last Ack, it could not program.
	NotProgrammed []string
	// Entries in the node's current view.
	Entries int
	// The node agent's build and stream protocol, from its last Hello.
	AgentVersion  string
	AgentProtocol uint32
}

// Lag is how many versions the node's acknowledged one is behind its
// desired one (0 before its first ack).
func (s Status) Lag() uint64 {
	if s.Acked == 0 || s.Desired <= s.Acked {
		return 0
	}
	return s.Desired - s.Acked
}

type history struct {
	acked           uint64
	lastNack        string
	lastNackVersion uint64
	notProgrammed   []string
	agentVersion    string
	agentProtocol   uint32
}

// Differ tracks the sessions of connected nodes. It is not safe for
// concurrent use.
type Differ struct {
	view     *view.View
	sessions map[string]*session
	history  map[string]*history
	lastID   uint64
	// The agent protocols served (version.Served); a Hello outside is
	// refused with a *version.SkewError.
	protocols version.Range
}

// New returns a Differ over a view.
func New(v *view.View) *Differ {
	return &Differ{view: v, sessions: map[string]*session{}, history: map[string]*history{}, protocols: version.Served}
}

// Serve sets the agent protocols served (version.Served unless set).
func (d *Differ) Serve(r version.Range) { d.protocols = r }

// Hello starts a session for the node, replacing any previous one. The
// next update (see Next) brings the node from what it holds to its current
// view. A Hello from an agent whose protocol is not served is refused with a
// *version.SkewError, and any previous session goes on.
func (d *Differ) Hello(h *doormanv1.Hello) (Token, error) {
	name := h.GetNodeName()
	if name == "" {
		return Token{}, fmt.Errorf("hello: %w: empty node name", ErrInvalid)
	}
	if err := d.protocols.Check(name, h.GetProtocol(), h.GetAgentVersion()); err != nil {
		return Token{}, fmt.Errorf("hello: %w", err)
	}
	holding := h.GetHolding()
	s := &session{resume: true}
	switch n := len(holding.GetBucketDigests()); n {
	case 0:
		// Holds nothing: a full view.
	case doormanv1.Buckets:
		held := new([doormanv1.Buckets]uint64)
		copy(held[:], holding.GetBucketDigests())
		s.held = view.DigestsOf(held)
	default:
		return Token{}, fmt.Errorf("hello from node %s: %w: %d bucket digests, want 0 or %d", name, ErrInvalid, n, doormanv1.Buckets)
	}
	if old := d.sessions[name]; old != nil {
		d.view.Release(name)
	}
	d.lastID++
	s.id = d.lastID
	d.sessions[name] = s
	d.view.Acquire(name)
	if d.history[name] == nil {
		d.history[name] = &history{}
	}
	d.history[name].agentVersion = h.GetAgentVersion()
	d.history[name].agentProtocol = version.AgentProtocol(h.GetProtocol())
	return Token{Node: name, ID: s.id}, nil
}

func (d *Differ) session(t Token) (*session, error) {
	s := d.sessions[t.Node]
	if s == nil || s.id != t.ID {
		return nil, fmt.Errorf("node %s: %w", t.Node, ErrStale)
	}
	return s, nil
}

// Close ends a session. What Inspect shows about the node stays while the
// node has a Node object.
func (d *Differ) Close(t Token) {
	if _, err := d.session(t); err != nil {
		return
	}
	delete(d.sessions, t.Node)
	d.view.Release(t.Node)
	if !d.view.HasObject(t.Node) {
		delete(d.history, t.Node)
	}
}

// Due reports whether Next may return something for the session now: an
// update, or an error for a session that is stale. It is false while an
// update is in flight (the Ack or Nack brings the next one) and while
// nothing changed for the node since the last update sent.
func (d *Differ) Due(t Token) bool {
	s, err := d.session(t)
	return err != nil || d.due(s, t.Node)
}

func (d *Differ) due(s *session, node string) bool {
	return s.inFlight == 0 && (s.resume || d.view.Desired(node) > s.lastSent)
}

// Forget drops what is kept about a node that is neither connected nor has
// a Node object any more.
func (d *Differ) Forget(node string) {
	if d.sessions[node] == nil && !d.view.HasObject(node) {
		delete(d.history, node)
	}
}

// Next returns the update the session's node must receive now, or nil when
// there is none: one is in flight, or nothing changed for this node since
// the last one sent. The returned update is recorded as in flight.
func (d *Differ) Next(t Token) (*wire.Update, error) {
	s, err := d.session(t)
	if err != nil {
		return nil, err
	}
	if !d.due(s, t.Node) {
		return nil, nil
	}
	v := d.view
	cur := v.BucketDigests(t.Node)
	u := &wire.Update{Version: v.Version(), ViewDigest: v.Digest(t.Node)}
	switch {
	case !s.held.Known():
		u.Full = true
		if u.Upserts, u.Shared, err = v.Full(t.Node); err != nil {
			return nil, err
		}
	case s.base == 0:
		d.byBuckets(t.Node, s.held, cur, u)
	default:
		keys, ok := v.Changed(t.Node, s.base)
		if !ok {
			d.byBuckets(t.Node, s.held, cur, u)
			break
		}
		for _, key := range keys {
			if e := v.Lookup(t.Node, key); e != nil {
				u.Upserts = append(u.Upserts, e)
			} else {
				u.Removals = append(u.Removals, key)
				u.RemovedTrigger = max(u.RemovedTrigger, removedTrigger(v, t.Node, key))
			}
		}
	}
	s.resume = false
	s.inFlight = u.Version
	s.inFlightBuckets = cur
	s.inFlightDigest = u.ViewDigest
	s.lastSent = u.Version
	return u, nil
}

// removedTrigger is the trigger time a removed shard's port holds beside
// its entry: a node's last endpoint gone, the port itself stays and the
// update must still say when the change that removed it was made.
func removedTrigger(v *view.View, node, key string) int64 {
	parent, ok := doormanv1.ShardParent(key)
	if !ok {
		return 0
	}
	if p := v.Lookup(node, parent); p != nil && p.TriggerOutside {
		return p.Trigger
	}
	return 0
}

// byBuckets fills u with every bucket whose digest differs between what the
// node holds and its current view.
func (d *Differ) byBuckets(node string, held, cur view.Digests, u *wire.Update) {
	for b := range uint32(doormanv1.Buckets) {
		if held.Bucket(b) == cur.Bucket(b) {
			continue
		}
		u.ReplacedBuckets = append(u.ReplacedBuckets, b)
		u.Upserts = append(u.Upserts, d.view.BucketEntries(node, b)...)
	}
}

// Ack records that the node applied the update in flight.
func (d *Differ) Ack(t Token, a *doormanv1.Ack) error {
	s, err := d.session(t)
	if err != nil {
		return err
	}
	if s.inFlight == 0 || a.GetVersion() != s.inFlight {
		return fmt.Errorf("ack from node %s: %w: version %d, in flight %d", t.Node, ErrInvalid, a.GetVersion(), s.inFlight)
	}
	h := d.history[t.Node]
	h.acked = s.inFlight
	h.notProgrammed = doormanv1.CutTexts(a.GetNotProgrammed(), doormanv1.MaxTexts, doormanv1.MaxText)
	if a.GetViewDigest() != s.inFlightDigest {
		// The node holds something else than it was sent: what it holds
		// is unknown, so the next update replaces its view whole.
		s.held, s.base = view.Digests{}, 0
		h.lastNack = fmt.Sprintf("acknowledged view digest %016x, want %016x", a.GetViewDigest(), s.inFlightDigest)
		h.lastNackVersion = s.inFlight
	} else {
		s.held, s.base = s.inFlightBuckets, s.inFlight
	}
	s.inFlight, s.inFlightBuckets = 0, view.Digests{}
	return nil
}

// Nack records that the node could not apply the update in flight; it keeps
// what it held. Nothing is resent: the next change brings every key changed
// since the node's last acknowledged version.
func (d *Differ) Nack(t Token, n *doormanv1.Nack) error {
	s, err := d.session(t)
	if err != nil {
		return err
	}
	if s.inFlight == 0 || n.GetVersion() != s.inFlight {
		return fmt.Errorf("nack from node %s: %w: version %d, in flight %d", t.Node, ErrInvalid, n.GetVersion(), s.inFlight)
	}
	h := d.history[t.Node]
	h.lastNack = doormanv1.CutText(n.GetError(), doormanv1.MaxNackText)
	h.lastNackVersion = s.inFlight
	s.inFlight, s.inFlightBuckets = 0, view.Digests{}
	return nil
}

// Status lists every node that has a Node object or a session, sorted.
func (d *Differ) Status() []Status {
	names := d.view.Nodes()
	for name := range d.sessions {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	out := make([]Status, 0, len(names))
	for _, name := range names {
		out = append(out, d.NodeStatus(name))
	}
	return out
}

// NodeStatus is what is known about one node.
func (d *Differ) NodeStatus(name string) Status {
	st := Status{Node: name, Desired: d.view.Desired(name), Entries: d.view.Count(name)}
	if h := d.history[name]; h != nil {
		st.Acked, st.LastNack, st.LastNackVersion = h.acked, h.lastNack, h.lastNackVersion
		st.NotProgrammed = h.notProgrammed
		st.AgentVersion, st.AgentProtocol = h.agentVersion, h.agentProtocol
	}
	if s := d.sessions[name]; s != nil {
		st.Connected = true
		st.InFlight = s.inFlight
	}
	return st
}
