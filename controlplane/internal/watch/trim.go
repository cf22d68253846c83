package watch

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
)

// The informers' caches and the model share the objects the transform
// returns, for as long as they exist: at 100,000 Services that is most of
// the control plane's memory, so the transform drops, in place, what no
// reader of the objects uses. Names, namespaces, UIDs, resourceVersions and
// creation times stay (keys, events, the age of claims), and so do every
// spec field the model reads and the labels and annotation it looks up.

// serviceLabels are the Service labels the model reads.
var serviceLabels = []string{"service.kubernetes.io/service-proxy-name", corev1.IsHeadlessService}

// sliceLabels are the EndpointSlice labels the model reads.
var sliceLabels = []string{discoveryv1.LabelServiceName, corev1.IsHeadlessService}

// trim drops what doorman never reads to keep the caches small: managed
// fields of every object, and more of Services and EndpointSlices (see
// trimService and trimSlice).
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		trimService(o)
	case *discoveryv1.EndpointSlice:
		trimSlice(o)
	default:
		if m, err := meta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
	}
	return obj, nil
}

// trimService keeps of a Service its identity, the labels the model
// reads, its spec without the selector (the EndpointSlices say which Pods
// it has) and its load balancers' addresses.
func trimService(s *corev1.Service) {
	s.ManagedFields = nil
	s.Annotations = nil
	s.OwnerReferences = nil
	s.Finalizers = nil
	s.Labels = only(s.Labels, serviceLabels)
	s.Spec.Selector = nil
	s.Status.Conditions = nil
}

// trimSlice keeps of an EndpointSlice its identity, the labels the model
// reads, its last-change trigger time, and its endpoints without their
// target references and deprecated topology.
func trimSlice(s *discoveryv1.EndpointSlice) {
	s.ManagedFields = nil
	s.OwnerReferences = nil
	s.Finalizers = nil
	s.Labels = only(s.Labels, sliceLabels)
	s.Annotations = only(s.Annotations, []string{corev1.EndpointsLastChangeTriggerTime})
	for i := range s.Endpoints {
		s.Endpoints[i].TargetRef = nil
		s.Endpoints[i].DeprecatedTopology = nil
	}
}

// only returns m with just the keys given, deleting the others in
// place (a smaller map would take as much memory as m); nil when none is
// left.
func only(m map[string]string, keys []string) map[string]string {
	for k := range m {
		if !slices.Contains(keys, k) {
			delete(m, k)
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}
