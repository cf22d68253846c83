package hub

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// Events receives what a Service's author should see. Its methods are
// called with the hub's lock held: they must not block.
type Events interface {
	// AddressConflict: service is sent without an address another
	// Service owns (c.Owner).
	AddressConflict(service *corev1.Service, c model.Conflict)
	// InvalidService: the model refuses service as a whole.
	InvalidService(service *corev1.Service, err error)
}

// report logs and posts what a Result newly makes wrong, once: a conflict
// for as long as it lasts, a refusal for as long as its reason stays.
func (h *Hub) report(r model.Result) {
	for _, c := range r.NewConflicts {
		h.log.Warn("service address conflict: address left out", "service", r.Service, "claim", c.Claim.String(),
			"address", c.Frontend.String(), "owner", c.Owner, "owner_claim", c.OwnerClaim.String())
		if svc := h.model.Service(r.Service); h.events != nil && svc != nil {
			h.events.AddressConflict(eventObject(svc), c)
		}
	}
	if r.NewlyInvalid && h.events != nil {
		if svc := h.model.Service(r.Service); svc != nil {
			h.events.InvalidService(eventObject(svc), r.Err)
		}
	}
}

// eventObject is the Service an Event refers to: its identity, all an
// Event's object reference reads.
func eventObject(svc *compact.Service) *corev1.Service {
	return &corev1.Service{ObjectMeta: *svc.GetObjectMeta().(*metav1.ObjectMeta)}
}

// ServiceConflicts returns the addresses a Service is sent without, each
// with the Service that owns it.
func (h *Hub) ServiceConflicts(namespace, name string) []model.Conflict {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.model.Conflicts(namespace + "/" + name)
}

// AddressConflicts is the number of addresses Services are sent without
// because another Service owns them.
func (h *Hub) AddressConflicts() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.model.ConflictCount()
}
