package watch

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// The informers' caches and the model share the objects the transform
// returns, for as long as they exist: at 100,000 Services that is most of
// the control plane's memory, so the transform keeps of Services and
// EndpointSlices only their compact forms (compact.Service, compact.Slice:
// identity, and what the model reads), and drops the managed fields of
// the other objects.

// trim returns what the caches keep of obj: the compact form of a Service
// or an EndpointSlice (kept as is when already compact), any other object
// without its managed fields.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return compact.FromService(o), nil
	case *discoveryv1.EndpointSlice:
		return compact.FromSlice(o), nil
	case *compact.Service, *compact.Slice:
		return obj, nil
	}
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
