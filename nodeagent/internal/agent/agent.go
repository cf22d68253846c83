package agent

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Kernel is the dataplane as the agent drives it (*dataplane.Dataplane).
// Sync may return a *dataplane.InvalidEntriesError after programming every
// entry but those it names: the agent counts that as committed.
// RetireUnused deletes per-endpoint-count chains no entry uses any more
// (Sync and Apply keep them); only the periodic resync calls it.
type Kernel interface {
	Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error)
	Apply(changes []dataplane.Change) (dataplane.Stats, error)
	RetireUnused() (int, error)
}

// Store is where applied views are kept across restarts (*cache.Cache).
// Freshness is the freshness marker restored with the view; SetFreshness
// sets the one the next Save or Replace writes with it.
type Store interface {
	Save(version uint64, changes []state.Change) error
	Replace(version uint64, view map[string]*doormanv1.Entry) error
	Freshness() map[string]uint64
	SetFreshness(map[string]uint64)
	// SetHolding sets what the next Save or Replace records the Hello of
	// the view it writes says (nil: nothing), for the next start's Hello.
	SetHolding(*doormanv1.Holding)
}

// Where the view came from at start-up, as GetState reports it.
const (
	LoadedFromNone   = "none"
	LoadedFromCache  = "cache"
	LoadedFromStream = "stream"
)

// Agent is one node's agent state machine. It is safe for concurrent use:
// Handle runs on the stream loop, Status and Ready on Inspect and health
// requests.
type Agent struct {
	node   string
	kernel Kernel
	store  Store // nil: no cache

	mu         sync.Mutex
	view       *state.View
	loadedFrom string
	// kernelHolds: the kernel was programmed with a view (from the cache or
	// the stream); /healthz reports ready from then on.
	kernelHolds bool
	// needSync: the kernel's content is not known to match the view (never
	// synced, or a failed Sync): the next update programs the whole view
	// with Sync rather than Apply.
	needSync bool
	// storeStale: a Save failed; the next write replaces the whole file.
	storeStale   bool
	connected    bool
	controlPlane string
	lastError    string
	// freshness is the highest freshness marker applied (see Freshness).
	freshness Freshness
	// byNodeTrigger is the newest trigger time measured of the ports sent
	// by node, which updates carry beside them: an update that resends
	// one (after a resume) brings no new one.
	byNodeTrigger int64

	// started is closed once the start-up is done (see NewRestoring).
	started chan struct{}
	// helloMu guards what follows; taken after mu when both are, and
	// alone by a Hello during the start-up, while Start holds mu.
	helloMu sync.Mutex
	// hello is what the Hello says until then (nil: the Hello waits);
	// helloSent: a Hello said it. helloStale: the restored view holds
	// something else, and no Hello said so since.
	hello                 *doormanv1.Holding
	helloSent, helloStale bool

	counters Counters
	// notProgrammed: keys held but left out of the kernel by Sync (they
	// cannot be rendered), with why.
	notProgrammed map[string]string
	// rejected: keys one of whose values the kernel refused, or that
	// failed validation (see rejection); the kernel holds
	// rejection.kernel for them.
	rejected map[string]rejection
}

// Counters are the agent's running totals, for GetState and metrics.
type Counters struct {
	// Version is the applied version.
	Version         uint64
	Acks            uint64
	Nacks           uint64
	LastNackVersion uint64
	// FullSyncs counts every full reconcile of the kernel: start-up, first
	// update, fallback after a failed Apply, resyncs.
	FullSyncs uint64
	// DriftRepairs counts resyncs that found the kernel changed by someone
	// else and put it back.
	DriftRepairs uint64
	Connected    bool
	// KernelReady: the kernel holds a view.
	KernelReady bool
	// NotProgrammed is the number of entries held whose value is not in
	// the kernel (they are invalid, cannot be rendered, or the kernel
	// refused them).
	NotProgrammed int
	// Rejections counts values of entries the kernel refused.
	Rejections uint64
	// Invalid counts values of entries refused because they fail
	// doormanv1.ValidateEntry (never tried in the kernel).
	Invalid uint64
}

// New returns an agent holding view (empty, or restored from the cache).
// store may be nil.
func New(node string, view *state.View, kernel Kernel, store Store) *Agent {
	a := newAgent(node, kernel, view)
	a.restoreView(view, store)
	close(a.started)
	return a
}

func newAgent(node string, kernel Kernel, view *state.View) *Agent {
	return &Agent{node: node, kernel: kernel, view: view, loadedFrom: LoadedFromNone, needSync: true, notProgrammed: map[string]string{}, rejected: map[string]rejection{}, started: make(chan struct{})}
}

// Start programs the kernel with the view restored from the cache, before
// any control plane is reached: a node that boots while the control plane
// is down serves from its cache, and a restart leaves a right kernel
// untouched (Sync changes only what differs). With nothing restored it does
// nothing: whatever the kernel holds keeps serving until the first update.
// A non-nil warning means Sync left some entries out; an error means the
// kernel was not programmed and the first update will Sync.
func (a *Agent) Start() (stats dataplane.Stats, warning, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.view.Version() == 0 {
		return dataplane.Stats{}, nil, nil
	}
	stats, warning, err = a.sync()
	if err != nil {
		a.lastError = err.Error()
		return stats, nil, fmt.Errorf("program cached view: %w", err)
	}
	a.needSync = false
	a.kernelHolds = true
	if warning != nil {
		a.lastError = warning.Error()
	}
	return stats, warning, nil
}

// sync programs the whole view (as the kernel is to hold it: see
// kernelEntries) and records what it left out. A nil error with a warning:
// every entry but those named is in the kernel.
func (a *Agent) sync() (dataplane.Stats, error, error) {
	return a.syncView(a.kernelEntries())
}

// syncView programs view as the kernel's whole content.
func (a *Agent) syncView(view map[string]*doormanv1.Entry) (dataplane.Stats, error, error) {
	a.counters.FullSyncs++
	stats, err := a.kernel.Sync(view)
	warning, err := splitPartial(err)
	if err != nil {
		return stats, nil, err
	}
	clear(a.notProgrammed)
	var partial *dataplane.InvalidEntriesError
	if errors.As(warning, &partial) {
		for k, why := range partial.Entries {
			a.notProgrammed[k] = why.Error()
		}
	}
	return stats, warning, nil
}

// Hello is the first message of a stream: who the agent is and what it
// holds; during the start-up, what the cache records (see NewRestoring).
func (a *Agent) Hello() *doormanv1.SyncRequest {
	return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{
		NodeName: a.node,
		Holding:  a.holding(),
	}}}
}

// Outcome is what handling one update did, and the reply to send.
type Outcome struct {
	// Reply is the Ack or Nack to send.
	Reply *doormanv1.SyncRequest
	// Version of the update.
	Version uint64
	// Changes is the number of keys the update changed.
	Changes int
	// Ops is the number of kernel objects touched.
	Ops int
	// Synced: the kernel was programmed with a full Sync (first update, or
	// after ApplyErr or an earlier failure) rather than Apply.
	Synced bool
	// ApplyErr is the Apply failure that made the agent fall back to Sync.
	ApplyErr error
	// Warning: the update was acknowledged, but the kernel left entries out
	// or the cache could not be written.
	Warning error
	// Err is why the update was rejected (the Nack's error); the view and
	// the kernel kept what they held.
	Err error
	// Resume: the agent's view and the control plane's disagree (view
	// digest mismatch); the stream should be reopened so that the Hello's
	// bucket digests let the control plane resend what differs. With no
	// Reply, the update was not applied: the Hello the stream opened with
	// said what the cache recorded, and the view restored from it holds
	// something else.
	Resume bool
	// Behind: the update was refused, unapplied and unanswered (Reply is
	// nil), because its freshness marker is behind what the agent has
	// applied; the stream should end so that another control plane is
	// tried.
	Behind *BehindError
	// TriggerTimes are the trigger times (Unix nanoseconds) of the
	// ServicePorts this update changed whose trigger time is new: the
	// caller measures network programming latency from them to the commit.
	TriggerTimes []int64
	// Received is when the update came off the stream (set by the
	// stream's reader; zero when it did not come from one).
	Received time.Time
}

// Handle applies one update: state, kernel, cache, in that order, and
// returns the Ack or Nack to send. An update whose freshness marker is
// behind the one held on any resource is refused first: nothing is applied
// and Outcome.Behind says why.
func (a *Agent) Handle(u *doormanv1.SyncResponse) Outcome {
	return a.handle(u, false)
}

// HandleBehind is Handle for an update the caller accepts although it is
// behind the marker held (a refusal that persisted: the cluster's data went
// back, e.g. etcd restored from a backup). The marker held then takes the
// update's values.
func (a *Agent) HandleBehind(u *doormanv1.SyncResponse) Outcome {
	return a.handle(u, true)
}

func (a *Agent) handle(u *doormanv1.SyncResponse, acceptBehind bool) Outcome {
	a.waitStarted()
	a.mu.Lock()
	defer a.mu.Unlock()
	out := Outcome{Version: u.GetVersion()}
	if a.isHelloStale() {
		out.Resume = true
		return out
	}
	got := Marker(u.GetFreshness())
	if lags := Behind(a.freshness, got); len(lags) > 0 && !acceptBehind {
		// The caller reports it, naming the control plane it came from.
		out.Behind = &BehindError{Version: u.GetVersion(), Held: maps.Clone(a.freshness), Got: got, Lags: lags}
		return out
	}
	applied, err := a.view.Apply(u)
	if err != nil {
		out.Resume = errors.Is(err, state.ErrViewDigest)
		return a.nack(out, err)
	}
	out.Changes = len(applied.Changes)

	// An entry that fails validation is refused alone, before the kernel:
	// the rest of the update applies and is acknowledged, with the entry
	// listed as not programmed until a new value of it comes.
	fresh := a.recordInvalid(applied.Changes, applied.Invalid)
	kc, p := a.kernelChanges(applied.Changes)
	res, err := a.program(&out, kc)
	a.recordRejections(res.bad)
	if err != nil {
		a.view.Revert(applied)
		return a.nack(out, err)
	}
	kernelSkipped := slices.ContainsFunc(p.skipped, func(k string) bool { return !a.rejected[k].invalid })
	if len(res.applied) == 0 && len(p.resolved) == 0 && (len(res.bad) > 0 || kernelSkipped) {
		// Nothing of the update reached the kernel, which refused some of
		// it: keep the previous view and say which keys the kernel
		// refuses. (Invalid entries alone do not get here: they are
		// acknowledged.)
		a.view.Revert(applied)
		if res.synced && a.view.Version() > 0 {
			a.kernelHolds = true
		}
		return a.nack(out, refusedError(res.bad, p.skipped, fresh, a.rejected))
	}
	for _, c := range res.applied {
		delete(a.rejected, c.Key)
	}
	for _, k := range p.resolved {
		delete(a.rejected, k)
	}
	warning := res.warning
	if len(res.bad) > 0 || len(p.skipped) > 0 {
		warning = errors.Join(warning, refusedError(res.bad, p.skipped, fresh, a.rejected))
	}
	out.TriggerTimes = triggerTimes(applied.Changes, a.rejected)
	if t := u.GetTriggerTimeUnixNano(); t > a.byNodeTrigger && changesByNode(applied.Changes, a.rejected) {
		out.TriggerTimes = append(out.TriggerTimes, t)
		a.byNodeTrigger = t
	}
	a.needSync = false
	a.kernelHolds = true
	if a.loadedFrom == LoadedFromNone {
		a.loadedFrom = LoadedFromStream
	}

	a.freshness = Advance(a.freshness, got, acceptBehind)
	if err := a.save(applied, len(res.bad) > 0, p.skipped); err != nil {
		warning = errors.Join(warning, err)
	}
	out.Warning = warning
	if warning != nil {
		a.lastError = warning.Error()
	}
	a.counters.Acks++
	out.Reply = &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{
		Version:       a.view.Version(),
		ViewDigest:    a.view.Digest(),
		NotProgrammed: a.notProgrammedKeys(),
	}}}
	return out
}

// triggerTimes returns the trigger times the changes bring: those of new or
// changed ServicePorts whose trigger time differs from the old value's (an
// unchanged trigger time was measured when it arrived). Values the kernel
// refused were not programmed: they bring none.
func triggerTimes(changes []state.Change, rejected map[string]rejection) []int64 {
	var out []int64
	for _, c := range changes {
		if r, ok := rejected[c.Key]; ok && sameValue(r.value, c.New) {
			continue
		}
		t := c.New.GetServicePort().GetTriggerTimeUnixNano()
		if t > 0 && t != c.Old.GetServicePort().GetTriggerTimeUnixNano() {
			out = append(out, t)
		}
	}
	return out
}

// changesByNode reports whether the changes bring a port sent by node or
// a shard of one that the kernel did not refuse: the update's trigger
// time is theirs.
func changesByNode(changes []state.Change, rejected map[string]rejection) bool {
	for _, c := range changes {
		if r, ok := rejected[c.Key]; ok && sameValue(r.value, c.New) {
			continue
		}
		for _, v := range []*doormanv1.ServicePort{c.New.GetServicePort(), c.Old.GetServicePort()} {
			if v.GetEndpointsByNode() || v.GetShard() {
				return true
			}
		}
	}
	return false
}

func (a *Agent) nack(out Outcome, err error) Outcome {
	out.Err = err
	a.counters.Nacks++
	a.counters.LastNackVersion = out.Version
	a.lastError = err.Error()
	out.Reply = &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{
		Version: out.Version,
		Error:   doormanv1.CutText(err.Error(), doormanv1.MaxNackText),
	}}}
	return out
}

// save records the applied update in the store; after a failed write the
// whole view is written, since the file may lag behind by more than one
// update. The store holds what the kernel holds (values the kernel refused
// are not written, the key keeps its previous value there), so that a
// restart programs a view the kernel takes and changes nothing; the Hello
// after it then shows the refused keys as differing and the control plane
// resends them: one more try per restart, not a loop. whole: the kernel
// refused some of this update's values (write the whole view); skip: keys
// whose refused value the update brought again (left as they are).
func (a *Agent) save(applied *state.Applied, whole bool, skip []string) error {
	if a.store == nil {
		return nil
	}
	a.store.SetFreshness(a.freshness)
	a.store.SetHolding(a.storeHolding())
	var err error
	if a.storeStale || whole {
		err = a.store.Replace(a.view.Version(), a.kernelEntries())
	} else {
		changes := applied.Changes
		if len(skip) > 0 {
			changes = slices.DeleteFunc(slices.Clone(changes), func(c state.Change) bool { return slices.Contains(skip, c.Key) })
		}
		err = a.store.Save(a.view.Version(), changes)
	}
	a.storeStale = err != nil
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// splitPartial separates a Sync that programmed every entry but some
// (a warning) from one that failed (an error).
func splitPartial(err error) (warning, failure error) {
	var partial *dataplane.InvalidEntriesError
	if errors.As(err, &partial) {
		return err, nil
	}
	return nil, err
}

// SetConnection records which control plane the stream is connected to.
func (a *Agent) SetConnection(controlPlane string, connected bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.controlPlane, a.connected = controlPlane, connected
}

// SetError records the last error seen outside Handle (e.g. a stream
// failure), for Inspect.
func (a *Agent) SetError(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.lastError = err.Error()
	}
}

// Ready reports whether the kernel holds a view, from the cache or the
// stream.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.kernelHolds
}

// Status is the agent's state for Inspect's GetState; with entries, every
// entry of the view, ordered by key.
func (a *Agent) Status(entries bool) *doormanv1.GetStateResponse {
	a.mu.Lock()
	defer a.mu.Unlock()
	ports := a.view.Len() - a.view.Shards()
	if a.view.Get(doormanv1.NodeKey) != nil {
		ports--
	}
	s := &doormanv1.GetStateResponse{
		NodeName:        a.node,
		Version:         a.view.Version(),
		ViewDigest:      a.view.Digest(),
		Connected:       a.connected,
		ControlPlane:    a.controlPlane,
		LastError:       a.lastError,
		LoadedFrom:      a.loadedFrom,
		ServicePorts:    uint32(ports),
		KernelReady:     a.kernelHolds,
		Acks:            a.counters.Acks,
		Nacks:           a.counters.Nacks,
		LastNackVersion: a.counters.LastNackVersion,
		FullSyncs:       a.counters.FullSyncs,
		DriftRepairs:    a.counters.DriftRepairs,
	}
	for _, k := range a.notProgrammedKeys() {
		why, ok := a.notProgrammed[k]
		if !ok {
			why = a.rejected[k].why()
		}
		s.NotProgrammed = append(s.NotProgrammed, k+": "+why)
	}
	if entries {
		s.Entries = a.view.Sorted()
	}
	return s
}

// Counters returns the agent's running totals.
func (a *Agent) Counters() Counters {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.counters
	c.Version = a.view.Version()
	c.Connected = a.connected
	c.KernelReady = a.kernelHolds
	c.NotProgrammed = len(a.notProgrammedKeys())
	return c
}
