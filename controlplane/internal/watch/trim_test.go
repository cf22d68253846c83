package watch

import (
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/tools/cache"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
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

// TestTrimKeepsCompactForms: the transform turns Services and
// EndpointSlices into their compact forms, which the informers' key
// function reads and the handlers recognize, tombstones included; other
// objects lose their managed fields only.
func TestTrimKeepsCompactForms(t *testing.T) {
	for _, tc := range []struct {
		obj  runtime.Object
		want runtime.Object
	}{
		{deployedService(), compact.FromService(deployedService())},
		{deployedSlice(), compact.FromSlice(deployedSlice())},
	} {
		got, err := trim(tc.obj)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreUnexported(compact.Service{}, compact.Endpoint{})); diff != "" {
			t.Errorf("compact form (-want +got):\n%s", diff)
		}
		if again, _ := trim(got); again != got {
			t.Errorf("trim of a compact form returned another object")
		}
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(got); err != nil || !strings.HasPrefix(key, "shop/web") {
			t.Errorf("key of %T: %q, %v; want shop/web...", got, key, err)
		}
		m, err := meta.Accessor(got)
		if err != nil || m.GetUID() == "" || m.GetResourceVersion() != "81234" || m.GetCreationTimestamp().Unix() != deployedMeta("", nil, nil).CreationTimestamp.Unix() {
			t.Errorf("identity of %T: %v, %v", got, m, err)
		}
		if diff := cmp.Diff(got, got.(runtime.Object).DeepCopyObject(), cmpopts.IgnoreUnexported(compact.Service{}, compact.Endpoint{})); diff != "" {
			t.Errorf("deep copy (-want +got):\n%s", diff)
		}
	}

	node := &corev1.Node{ObjectMeta: deployedMeta("n1", map[string]string{corev1.LabelTopologyZone: "zone-a"}, nil)}
	if _, err := trim(node); err != nil {
		t.Fatal(err)
	}
	if node.ManagedFields != nil || node.Labels[corev1.LabelTopologyZone] != "zone-a" {
		t.Errorf("trimmed Node: managed fields %v, labels %v; want none, and its labels kept", node.ManagedFields, node.Labels)
	}
}

// benchObjects are a Service with its EndpointSlice as e2e/bench writes
// them (e2e/bench/workload.go), encoded as the API server sends them.
func benchObjects(t testing.TB, i int) (svc, slice []byte) {
	name := fmt.Sprintf("svc-%06d", i)
	ip := fmt.Sprintf("10.100.%d.%d", i/256, i%256)
	now := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench", UID: uuid.NewUUID(), CreationTimestamp: now, ResourceVersion: "1234567"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: ptr(corev1.IPFamilyPolicySingleStack),
			SessionAffinity: corev1.ServiceAffinityNone, InternalTrafficPolicy: ptr(corev1.ServiceInternalTrafficPolicyCluster),
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	endpoint := func(ip string) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr("node-1"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}}
	}
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-bench", Namespace: "bench", UID: uuid.NewUUID(), CreationTimestamp: now, Generation: 1, ResourceVersion: "1234567",
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "bench.doorman-proxy.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint("10.200.0.1"), endpoint("10.200.0.2")},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	var err error
	if svc, err = s.Marshal(); err == nil {
		slice, err = es.Marshal()
	}
	if err != nil {
		t.Fatal(err)
	}
	return svc, slice
}

// TestCacheBytesPerService pins the heap an informer's cache keeps of
// each Service with its EndpointSlice, decoded as the informers decode
// them and kept through the real transform: at 100,000 Services each
// byte here is 100 kB of the control plane's memory.
func TestCacheBytesPerService(t *testing.T) {
	const n = 5000
	encoded := make([][2][]byte, n)
	for i := range n {
		encoded[i][0], encoded[i][1] = benchObjects(t, i)
	}
	heap := func() uint64 {
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	services, slices := cache.NewStore(cache.MetaNamespaceKeyFunc), cache.NewStore(cache.MetaNamespaceKeyFunc)
	before := heap()
	for _, e := range encoded {
		svc, slice := &corev1.Service{}, &discoveryv1.EndpointSlice{}
		if err := svc.Unmarshal(e[0]); err != nil {
			t.Fatal(err)
		}
		if err := slice.Unmarshal(e[1]); err != nil {
			t.Fatal(err)
		}
		keep(t, services, svc)
		keep(t, slices, slice)
	}
	perService := (int64(heap()) - int64(before)) / n
	goruntime.KeepAlive(services)
	goruntime.KeepAlive(slices)
	t.Logf("%d bytes per Service and its EndpointSlice", perService)
	if perService > maxCacheBytesPerService {
		t.Errorf("the caches keep %d bytes per Service and its EndpointSlice, want at most %d", perService, maxCacheBytesPerService)
	}
}

// keep adds obj to store through the transform, as an informer does.
func keep(t *testing.T, store cache.Store, obj runtime.Object) {
	kept, err := trim(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Add(kept); err != nil {
		t.Fatal(err)
	}
}

// maxCacheBytesPerService is what the caches keep of a Service and its
// EndpointSlice of two endpoints, with headroom: the compact forms and
// the stores' entries (about 380 bytes); the decoded objects, trimmed in
// place, took about 1,790.
const maxCacheBytesPerService = 500
