package watch

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func ptr[T any](v T) *T { return &v }

// deployedMeta is the metadata kubectl apply and the controllers leave on
// an object: what the cache would keep of it untrimmed.
func deployedMeta(name string, labels, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace: "shop", Name: name, UID: "4c7f2d1e-9a61-4a43-8d5c-5f0d0b7c2e11", ResourceVersion: "81234",
		Generation: 3, CreationTimestamp: metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		Labels: labels, Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: "web", UID: "4c7f2d1e-9a61-4a43-8d5c-5f0d0b7c2e10"}},
		Finalizers:      []string{"example.com/cleanup"},
		ManagedFields: []metav1.ManagedFieldsEntry{{
			Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:annotations":{}},"f:spec":{"f:ports":{}}}`),
		}},
	}
}

func deployedService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: deployedMeta("web", map[string]string{"app": "web", "team": "shop", corev1.IsHeadlessService: ""},
			map[string]string{corev1.LastAppliedConfigAnnotation: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"selector":{"app":"web"}}}` + strings.Repeat(" ", 600)}),
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.0.0.10", ClusterIPs: []string{"10.0.0.10"},
			Selector: map[string]string{"app": "web", "tier": "frontend"},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
		},
		Status: corev1.ServiceStatus{
			LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}},
			Conditions:   []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Provisioned", Message: "the load balancer is ready"}},
		},
	}
}

func deployedSlice() *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: deployedMeta("web-abcde", map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io", "app": "web"},
			map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-02T03:04:05Z", "example.com/note": "kept by nobody"}),
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	for _, ip := range []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"} {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:          []string{ip},
			Conditions:         discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:           ptr("n1"),
			Zone:               ptr("zone-a"),
			Hints:              &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}},
			TargetRef:          &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "web-7d9f8c6b5-" + ip, UID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"},
			DeprecatedTopology: map[string]string{corev1.LabelHostname: "n1", corev1.LabelTopologyZone: "zone-a"},
		})
	}
	return s
}

// TestTrimKeepsWhatTheModelReads: the transform keeps every field the
// model and the events read and drops the rest.
func TestTrimKeepsWhatTheModelReads(t *testing.T) {
	svc := deployedService()
	want := svc.DeepCopy()
	want.Labels = map[string]string{corev1.IsHeadlessService: ""}
	want.Annotations, want.OwnerReferences, want.Finalizers, want.ManagedFields = nil, nil, nil, nil
	want.Spec.Selector, want.Status.Conditions = nil, nil
	if _, err := trim(svc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, svc); diff != "" {
		t.Errorf("trimmed Service (-want +got):\n%s", diff)
	}

	s := deployedSlice()
	wantSlice := s.DeepCopy()
	wantSlice.Labels = map[string]string{discoveryv1.LabelServiceName: "web"}
	wantSlice.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-02T03:04:05Z"}
	wantSlice.OwnerReferences, wantSlice.Finalizers, wantSlice.ManagedFields = nil, nil, nil
	for i := range wantSlice.Endpoints {
		wantSlice.Endpoints[i].TargetRef, wantSlice.Endpoints[i].DeprecatedTopology = nil, nil
	}
	if _, err := trim(s); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantSlice, s); diff != "" {
		t.Errorf("trimmed EndpointSlice (-want +got):\n%s", diff)
	}

	node := &corev1.Node{ObjectMeta: deployedMeta("n1", map[string]string{corev1.LabelTopologyZone: "zone-a"}, nil)}
	if _, err := trim(node); err != nil {
		t.Fatal(err)
	}
	if node.ManagedFields != nil || node.Labels[corev1.LabelTopologyZone] != "zone-a" {
		t.Errorf("trimmed Node: managed fields %v, labels %v; want none, and its labels kept", node.ManagedFields, node.Labels)
	}
}

// TestTrimBytesKept pins how much of a deployed Service and EndpointSlice
// the caches keep, in encoded bytes: a regression that keeps what the
// model does not read shows here.
func TestTrimBytesKept(t *testing.T) {
	for _, tc := range []struct {
		name       string
		obj        interface{ Size() int }
		before     int
		maxTrimmed int
	}{
		{"service", deployedService(), deployedService().Size(), 220},
		{"endpointslice", deployedSlice(), deployedSlice().Size(), 360},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := trim(tc.obj); err != nil {
				t.Fatal(err)
			}
			if got := tc.obj.Size(); got > tc.maxTrimmed {
				t.Errorf("trimmed to %d bytes (from %d), want at most %d", got, tc.before, tc.maxTrimmed)
			}
		})
	}
}
