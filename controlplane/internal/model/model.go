package model

import (
	"errors"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// Result is a Service's complete set of entries after a change: Values
// replace whatever the Service had (nil: it has none). Err names the objects
// that were skipped; Values hold what remains valid.
type Result struct {
	Service string // "<namespace>/<name>"
	Values  map[string]Value
	Err     error
	// Conflicts are the frontends the Service claims and other Services
	// own: Values are without those addresses. Like Values, the complete
	// list, sorted.
	Conflicts []Conflict
	// NewConflicts are the Conflicts the Service did not have before this
	// Result, to report once.
	NewConflicts []Conflict
	// NewlyInvalid: Err holds an *InvalidServiceError the Service's
	// previous Result did not (or one for another reason), to report once.
	NewlyInvalid bool
}

// Model indexes Services and EndpointSlices and recomputes one Service's
// entries when it or one of its slices changes. It is not safe for
// concurrent use.
type Model struct {
	// services and slices are the compact forms the informers' caches
	// hold (the same pointers).
	services map[string]*compact.Service
	// slices of each Service, sorted by name (most Services have one: a
	// map each would cost ten times the memory).
	slices map[string][]*compact.Slice
	// sliceService is the Service each known slice belongs to.
	sliceService map[string]string
	// frontends indexes what each Service claims, to decide who owns a
	// contested frontend.
	frontends *frontends
	// conflicts and invalid are the last Result's Conflicts and refusal
	// of each Service that has any.
	conflicts     map[string][]Conflict
	conflictCount int
	invalid       map[string]string
	// dirty, while not nil, collects the Services changed since Defer
	// instead of recomputing them at once (see Flush).
	dirty map[string]struct{}
	// byNode: ports with a Local traffic policy are computed by node
	// (PortsByNode).
	byNode bool
}

// New returns an empty Model.
func New() *Model {
	return &Model{
		services:     map[string]*compact.Service{},
		slices:       map[string][]*compact.Slice{},
		sliceService: map[string]string{},
		frontends:    newFrontends(),
		conflicts:    map[string][]Conflict{},
		invalid:      map[string]string{},
	}
}

// EndpointsByNode makes every Service computed from now on send the ports
// of a Local traffic policy by node (see PortsByNode). It is set once,
// before the first object.
func (m *Model) EndpointsByNode() { m.byNode = true }

func nsName(namespace, name string) string { return namespace + "/" + name }

// SetService adds or replaces a Service. It returns the Service's Result
// first, then one for every other Service that gains or loses an address
// to it (see Conflicts).
func (m *Model) SetService(svc *corev1.Service) []Result {
	return m.SetCompactService(compact.FromService(svc))
}

// SetCompactService is SetService with the Service's compact form, which
// the model keeps.
func (m *Model) SetCompactService(svc *compact.Service) []Result {
	id := nsName(svc.Namespace, svc.Name)
	m.services[id] = svc
	return m.update(id)
}

// DeleteService removes a Service; its slices stay known until deleted.
// The Results of the Services that gain an address it held follow its own.
func (m *Model) DeleteService(namespace, name string) []Result {
	id := nsName(namespace, name)
	delete(m.services, id)
	return m.update(id)
}

// Service returns the Service known under "<namespace>/<name>", or nil.
func (m *Model) Service(id string) *compact.Service { return m.services[id] }

// Conflicts returns a Service's current conflicts (see Result.Conflicts).
func (m *Model) Conflicts(id string) []Conflict { return m.conflicts[id] }

// ConflictCount is the number of conflicts of every Service.
func (m *Model) ConflictCount() int { return m.conflictCount }

// SetSlice adds or replaces an EndpointSlice. It returns the Services whose
// entries it changes: none when the slice belongs to no Service, two when
// its Service label moved.
func (m *Model) SetSlice(s *discoveryv1.EndpointSlice) []Result {
	return m.SetCompactSlice(compact.FromSlice(s))
}

// SetCompactSlice is SetSlice with the slice's compact form, which the
// model keeps.
func (m *Model) SetCompactSlice(s *compact.Slice) []Result {
	sid := nsName(s.Namespace, s.Name)
	var out []Result
	owner := ""
	if s.Service != "" {
		owner = nsName(s.Namespace, s.Service)
	}
	if prev, ok := m.sliceService[sid]; ok && prev != owner {
		out = append(out, m.removeSlice(sid, prev)...)
	}
	if owner == "" {
		return out
	}
	m.sliceService[sid] = owner
	list := m.slices[owner]
	if i, found := slices.BinarySearchFunc(list, s.Name, bySliceName); found {
		list[i] = s
	} else {
		m.slices[owner] = slices.Insert(list, i, s)
	}
	return append(out, m.update(owner)...)
}

// DeleteSlice removes an EndpointSlice.
func (m *Model) DeleteSlice(namespace, name string) []Result {
	sid := nsName(namespace, name)
	owner, ok := m.sliceService[sid]
	if !ok {
		return nil
	}
	return m.removeSlice(sid, owner)
}

func (m *Model) removeSlice(sid, owner string) []Result {
	delete(m.sliceService, sid)
	list := slices.DeleteFunc(m.slices[owner], func(s *compact.Slice) bool { return nsName(s.Namespace, s.Name) == sid })
	if len(list) == 0 {
		delete(m.slices, owner)
	} else {
		m.slices[owner] = list
	}
	return m.update(owner)
}

func bySliceName(s *compact.Slice, name string) int { return strings.Compare(s.Name, name) }

// update recomputes a Service, records what it claims and returns its
// Result, then those of the Services whose addresses changed hands: when
// an owner goes away or lets an address go, the next claimant gets it in
// the same update. While deferred (see Defer) it only notes the Service.
func (m *Model) update(id string) []Result {
	if m.dirty != nil {
		m.dirty[id] = struct{}{}
		return nil
	}
	return m.settle(m.compute(id))
}

// settle records what a computed Result claims and returns it finished,
// then the Results of the Services whose addresses changed hands.
func (m *Model) settle(r Result) []Result {
	id := r.Service
	var a age
	if svc := m.services[id]; svc != nil {
		a = ageOf(svc)
	}
	others := m.frontends.set(id, a, frontendsOf(r.Values))
	out := make([]Result, 0, 1+len(others))
	out = append(out, m.finish(r))
	for _, o := range others {
		out = append(out, m.finish(m.compute(o)))
	}
	return out
}

// finish leaves out of a computed Result the addresses other Services own
// and records its conflicts and refusal against the previous Result's.
func (m *Model) finish(r Result) Result {
	r.Values, r.Conflicts = m.frontends.withoutLost(r.Service, r.Values)
	prev := m.conflicts[r.Service]
	for _, c := range r.Conflicts {
		if !slices.Contains(prev, c) {
			r.NewConflicts = append(r.NewConflicts, c)
		}
	}
	m.conflictCount += len(r.Conflicts) - len(prev)
	if len(r.Conflicts) == 0 {
		delete(m.conflicts, r.Service)
	} else {
		m.conflicts[r.Service] = r.Conflicts
	}
	var inv *InvalidServiceError
	if errors.As(r.Err, &inv) {
		r.NewlyInvalid = m.invalid[r.Service] != inv.Error()
		m.invalid[r.Service] = inv.Error()
	} else {
		delete(m.invalid, r.Service)
	}
	return r
}

func (m *Model) compute(id string) Result {
	svc, ok := m.services[id]
	if !ok {
		return Result{Service: id}
	}
	// Sorted by name: errors in a stable order.
	values, err := ports(svc, m.slices[id], m.byNode)
	return Result{Service: id, Values: values, Err: err}
}
