package model

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Result is a Service's complete set of entries after a change: Values
// replace whatever the Service had (nil: it has none). Err names the objects
// that were skipped; Values hold what remains valid.
type Result struct {
	Service string // "<namespace>/<name>"
	Values  map[string]Value
	Err     error
}

// Model indexes Services and EndpointSlices and recomputes one Service's
// entries when it or one of its slices changes. It is not safe for
// concurrent use.
type Model struct {
	services map[string]*corev1.Service
	// slices of each Service, by slice name.
	slices map[string]map[string]*discoveryv1.EndpointSlice
	// sliceService is the Service each known slice belongs to.
	sliceService map[string]string
}

// New returns an empty Model.
func New() *Model {
	return &Model{
		services:     map[string]*corev1.Service{},
		slices:       map[string]map[string]*discoveryv1.EndpointSlice{},
		sliceService: map[string]string{},
	}
}

func nsName(namespace, name string) string { return namespace + "/" + name }

// SetService adds or replaces a Service.
func (m *Model) SetService(svc *corev1.Service) Result {
	id := nsName(svc.Namespace, svc.Name)
	m.services[id] = svc
	return m.compute(id)
}

// DeleteService removes a Service; its slices stay known until deleted.
func (m *Model) DeleteService(namespace, name string) Result {
	id := nsName(namespace, name)
	delete(m.services, id)
	return Result{Service: id}
}

// SetSlice adds or replaces an EndpointSlice. It returns the Services whose
// entries it changes: none when the slice belongs to no Service, two when
// its Service label moved.
func (m *Model) SetSlice(s *discoveryv1.EndpointSlice) []Result {
	sid := nsName(s.Namespace, s.Name)
	var out []Result
	owner := ""
	if name := s.Labels[LabelServiceName]; name != "" && !hasLabel(s.Labels, LabelHeadless) {
		owner = nsName(s.Namespace, name)
	}
	if prev, ok := m.sliceService[sid]; ok && prev != owner {
		out = append(out, m.removeSlice(sid, prev))
	}
	if owner == "" {
		return out
	}
	m.sliceService[sid] = owner
	if m.slices[owner] == nil {
		m.slices[owner] = map[string]*discoveryv1.EndpointSlice{}
	}
	m.slices[owner][s.Name] = s
	return append(out, m.compute(owner))
}

// DeleteSlice removes an EndpointSlice.
func (m *Model) DeleteSlice(namespace, name string) []Result {
	sid := nsName(namespace, name)
	owner, ok := m.sliceService[sid]
	if !ok {
		return nil
	}
	return []Result{m.removeSlice(sid, owner)}
}

func (m *Model) removeSlice(sid, owner string) Result {
	delete(m.sliceService, sid)
	byName := m.slices[owner]
	for name, s := range byName {
		if nsName(s.Namespace, name) == sid {
			delete(byName, name)
		}
	}
	if len(byName) == 0 {
		delete(m.slices, owner)
	}
	return m.compute(owner)
}

func (m *Model) compute(id string) Result {
	svc, ok := m.services[id]
	if !ok {
		return Result{Service: id}
	}
	byName := m.slices[id]
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names) // errors in a stable order
	list := make([]*discoveryv1.EndpointSlice, 0, len(names))
	for _, n := range names {
		list = append(list, byName[n])
	}
	values, err := Ports(svc, list)
	return Result{Service: id, Values: values, Err: err}
}
