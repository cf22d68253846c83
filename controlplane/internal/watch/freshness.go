package watch

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
)

// The watched resources, as Freshness names them.
const (
	ResourceServices       = "services"
	ResourceEndpointSlices = "endpointslices"
	ResourceNodes          = "nodes"
	ResourceServiceCIDRs   = "servicecidrs"
)

// Freshness tracks, per watched resource, how far the informers have read
// the API server: the highest resourceVersion seen (in lists, watch events
// and watch bookmarks, which client-go's reflectors ask for), the highest
// of a change (events that add, update or delete, and lists), and when the
// API server was last heard from.
//
// An agent holding changes up to revision C from one replica refuses an
// update from a replica that has seen less than C: that replica misses a
// change the node holds. Bookmarks raise seen only, so two replicas that
// heard bookmarks at different times still accept each other.
//
// resourceVersions are opaque to clients by contract, but every real API
// server serves etcd revisions: one counter for the whole cluster, as
// decimal numbers. Freshness relies on that and parses them as uint64, so
// that markers of different replicas compare. A resourceVersion that does
// not parse is logged once and the resource carries no marker from then on
// (it is never compared, so never a reason to refuse an update).
//
// The marker is read where the reflector reads the stream, so it may be
// ahead of what the handlers have delivered by the informer's queue (a few
// milliseconds): an agent may then refuse an update from a replica that is
// as fresh as it is, and reconnects.
type Freshness struct {
	clock clock.PassiveClock
	log   hclog.Logger

	mu        sync.Mutex
	resources map[string]*progress
}

type progress struct {
	seen      uint64
	changed   uint64
	opaque    bool // a resourceVersion did not parse: no marker
	heard     time.Time
	listed    bool   // a list or the end of the initial events has been seen
	lastEvent string // what was heard last (list, ADDED, BOOKMARK...)
}

// NewFreshness returns a tracker reading time from clk (nil: the real
// clock).
func NewFreshness(clk clock.PassiveClock, log hclog.Logger) *Freshness {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Freshness{clock: clk, log: log, resources: map[string]*progress{}}
}

// track starts tracking a resource: it counts as heard from now.
func (f *Freshness) track(resource string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.resources[resource]; !ok {
		f.resources[resource] = &progress{heard: f.clock.Now()}
	}
}

// Listed records a list's (or the initial events') resourceVersion: the
// store now holds the resource as of that revision. It replaces the
// marker even when lower, since it is the state now held; a lower one is
// logged (the API server's data went back: a lagging API server, or etcd
// restored from a backup).
func (f *Freshness) Listed(resource, rv string) {
	f.observe(resource, rv, "list", true)
}

// Seen records a watch event's or bookmark's resourceVersion: the marker
// only rises; a BOOKMARK raises seen only; "" only counts as hearing from
// the API server.
func (f *Freshness) Seen(resource, rv, event string) {
	f.observe(resource, rv, event, false)
}

func (f *Freshness) observe(resource, rv, event string, list bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.resources[resource]
	if p == nil {
		p = &progress{}
		f.resources[resource] = p
	}
	p.heard, p.lastEvent = f.clock.Now(), event
	if p.opaque || rv == "" {
		return
	}
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		p.opaque = true
		f.log.Error("resourceVersion is not a number: no freshness marker for this resource; agents will not compare it",
			"resource", resource, "resource_version", rv, "event", event)
		return
	}
	switch {
	case list:
		if p.listed && n < p.seen {
			f.log.Warn("resourceVersion went back in a list: the API server's data is older than what was seen (a lagging API server, or etcd restored from a backup?)",
				"resource", resource, "seen", p.seen, "listed", n)
		}
		p.seen, p.changed, p.listed = n, n, true
	case event == string(apiwatch.Bookmark):
		p.seen = max(p.seen, n)
	default:
		p.seen, p.changed = max(p.seen, n), max(p.changed, n)
	}
}

// Marker is how far each resource has been read, resources without a
// marker (not yet heard from, or opaque) left out.
func (f *Freshness) Marker() map[string]wire.Versions {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]wire.Versions, len(f.resources))
	for r, p := range f.resources {
		if !p.opaque && p.seen > 0 {
			out[r] = wire.Versions{Seen: p.seen, Changed: p.changed}
		}
	}
	return out
}

// Silence is how long ago each tracked resource was last heard from.
func (f *Freshness) Silence() map[string]time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	out := make(map[string]time.Duration, len(f.resources))
	for r, p := range f.resources {
		out[r] = now.Sub(p.heard)
	}
	return out
}

// StaleError names the resources not heard from for longer than the
// bound, and for how long.
type StaleError struct {
	Bound  time.Duration
	Silent map[string]time.Duration
}

func (e *StaleError) Error() string {
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(e.Silent)) {
		parts = append(parts, fmt.Sprintf("%s: no event or bookmark for %s", r, e.Silent[r].Round(time.Second)))
	}
	return fmt.Sprintf("informers stale (bound %s): %s", e.Bound, strings.Join(parts, ", "))
}

// Check returns a *StaleError when a resource has not been heard from for
// longer than bound; bound <= 0 checks nothing.
func (f *Freshness) Check(bound time.Duration) error {
	if bound <= 0 {
		return nil
	}
	stale := map[string]time.Duration{}
	for r, d := range f.Silence() {
		if d > bound {
			stale[r] = d
		}
	}
	if len(stale) == 0 {
		return nil
	}
	return &StaleError{Bound: bound, Silent: stale}
}

// initialEventsEnd is the annotation of the bookmark that ends a watch's
// initial events (a streaming list, WatchList).
const initialEventsEnd = metav1.InitialEventsAnnotationKey

// trackedListWatch reports what its ListerWatcher returns to a Freshness.
type trackedListWatch struct {
	inner    cache.ListerWatcherWithContext
	plain    cache.ListerWatcher
	resource string
	fresh    *Freshness
}

// tracked wraps lw so that fresh hears of the resource's lists, events and
// bookmarks. It keeps whether lw supports WatchList semantics.
func tracked(lw cache.ListerWatcher, resource string, fresh *Freshness) cache.ListerWatcher {
	fresh.track(resource)
	t := &trackedListWatch{inner: cache.ToListerWatcherWithContext(lw), plain: lw, resource: resource, fresh: fresh}
	if _, ok := lw.(interface{ IsWatchListSemanticsUnSupported() bool }); ok {
		return &trackedWatchList{t}
	}
	return t
}

// trackedWatchList is a trackedListWatch whose ListerWatcher says whether
// it supports WatchList semantics.
type trackedWatchList struct{ *trackedListWatch }

func (t *trackedWatchList) IsWatchListSemanticsUnSupported() bool {
	return t.plain.(interface{ IsWatchListSemanticsUnSupported() bool }).IsWatchListSemanticsUnSupported()
}

func (t *trackedListWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return t.ListWithContext(context.Background(), opts)
}

func (t *trackedListWatch) Watch(opts metav1.ListOptions) (apiwatch.Interface, error) {
	return t.WatchWithContext(context.Background(), opts)
}

func (t *trackedListWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	obj, err := t.inner.ListWithContext(ctx, opts)
	if err != nil {
		return obj, err
	}
	if l, err := meta.ListAccessor(obj); err == nil {
		t.fresh.Listed(t.resource, l.GetResourceVersion())
	}
	return obj, nil
}

func (t *trackedListWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (apiwatch.Interface, error) {
	w, err := t.inner.WatchWithContext(ctx, opts)
	if err != nil {
		return w, err
	}
	// A watch the API server accepted counts as hearing from it: the
	// first bookmark of a new watch can take two minutes, and reflectors
	// restart their watches every five to ten.
	t.fresh.Seen(t.resource, "", "watch")
	return apiwatch.Filter(w, t.observe), nil
}

// observe notes an event's resourceVersion and passes it on unchanged.
func (t *trackedListWatch) observe(e apiwatch.Event) (apiwatch.Event, bool) {
	if e.Type == apiwatch.Error {
		return e, true
	}
	m, err := meta.Accessor(e.Object)
	if err != nil {
		return e, true
	}
	if e.Type == apiwatch.Bookmark && m.GetAnnotations()[initialEventsEnd] == "true" {
		t.fresh.Listed(t.resource, m.GetResourceVersion())
	} else {
		t.fresh.Seen(t.resource, m.GetResourceVersion(), string(e.Type))
	}
	return e, true
}
