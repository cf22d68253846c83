package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	benchNamespace = "bench"
	managedBy      = "bench.doorman-proxy.io"
	servicePort    = 80
	podPort        = 8080
	benchEndpoints = 2 // per Service
)

// workload is the benchmark's Services: selector-less, each with one
// hand-made EndpointSlice of two endpoints, so no Pod per Service is
// needed and an endpoint change is one API write. They are loaded into
// etcd (etcdload.go); changes go through the API server.
type workload struct {
	client  kubernetes.Interface
	etcd    *etcdLoader
	writers int // parallel etcd transactions

	mu     sync.Mutex
	slices []*discoveryv1.EndpointSlice // by Service index
	ips    []netip.Addr                 // ClusterIP by Service index
	eps    [2]netip.Addr                // the endpoints every Service starts with
	nextIP uint32
}

func serviceName(i int) string { return fmt.Sprintf("svc-%06d", i) }

func (w *workload) ensureNamespace(ctx context.Context) error {
	_, err := w.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", benchNamespace, err)
	}
	return nil
}

// benchControllers are the kube-controller-manager controllers the
// benchmark needs: only the ServiceAccount controller (its Pods are
// admitted with the default ServiceAccount; the API server writes
// default/kubernetes's EndpointSlice itself). The garbage collector and
// the EndpointSlice controllers would walk every loaded object while the
// proxies are measured; the mirroring controller lists a namespace's
// slices for each Service, minutes of CPU at 100,000 Services.
var benchControllers = []string{"serviceaccount-controller"}

// servicesPerTxn is how many Services one etcd transaction writes: each
// is three objects (Service, IPAddress, EndpointSlice).
const servicesPerTxn = etcdMaxTxnOps / 3

// firstClusterIP is where the benchmark's ClusterIPs start: inside
// ServiceCIDR (a /12), above the low addresses the API server's own
// allocations take.
var firstClusterIP = netip.MustParseAddr("10.100.0.0")

// grow loads Services (each with its IPAddress and EndpointSlice) into
// etcd until there are n, then waits until the API server lists them all.
func (w *workload) grow(ctx context.Context, n int) error {
	w.mu.Lock()
	have := len(w.slices)
	if n > have {
		w.slices = append(w.slices, make([]*discoveryv1.EndpointSlice, n-have)...)
		w.ips = append(w.ips, make([]netip.Addr, n-have)...)
	}
	w.mu.Unlock()
	if n <= have {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	next.Store(int64(have))
	var wg sync.WaitGroup
	for range w.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				from := int(next.Add(servicesPerTxn) - servicesPerTxn)
				if from >= n {
					return
				}
				if err := w.load(ctx, from, min(from+servicesPerTxn, n)); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return w.waitListed(ctx, n)
}

// load writes Services [from, to) in one etcd transaction.
func (w *workload) load(ctx context.Context, from, to int) error {
	now := metav1.Now()
	kvs := make([]etcdKV, 0, 3*(to-from))
	slices := make([]*discoveryv1.EndpointSlice, 0, to-from)
	ips := make([]netip.Addr, 0, to-from)
	for i := from; i < to; i++ {
		name := serviceName(i)
		ip := nthAddr(firstClusterIP, i)
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace, UID: uuid.NewUUID(), CreationTimestamp: now},
			Spec: corev1.ServiceSpec{
				Type:                  corev1.ServiceTypeClusterIP,
				ClusterIP:             ip.String(),
				ClusterIPs:            []string{ip.String()},
				IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
				IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
				SessionAffinity:       corev1.ServiceAffinityNone,
				InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
				Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: servicePort, TargetPort: intstr.FromInt32(podPort)}},
			},
		}
		addr := &networkingv1.IPAddress{
			TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
			ObjectMeta: metav1.ObjectMeta{
				Name: ip.String(), UID: uuid.NewUUID(), CreationTimestamp: now,
				Labels: map[string]string{
					networkingv1.LabelIPAddressFamily: string(corev1.IPv4Protocol),
					networkingv1.LabelManagedBy:       "ipallocator.k8s.io", // the API server's allocator
				},
			},
			Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{Resource: "services", Namespace: benchNamespace, Name: name}},
		}
		slice := &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{
				Name: name + "-bench", Namespace: benchNamespace, UID: uuid.NewUUID(), CreationTimestamp: now, Generation: 1,
				Labels: map[string]string{
					discoveryv1.LabelServiceName: name,
					discoveryv1.LabelManagedBy:   managedBy,
				},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{endpoint(w.eps[0]), endpoint(w.eps[1])},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](podPort)}},
		}
		kvs = append(kvs,
			etcdKV{serviceKey(benchNamespace, name), svc},
			etcdKV{ipAddressKey(addr.Name), addr},
			etcdKV{endpointSliceKey(benchNamespace, slice.Name), slice})
		slices, ips = append(slices, slice), append(ips, ip)
	}
	rev, err := w.etcd.put(ctx, kvs)
	if err != nil {
		return fmt.Errorf("load services %s to %s: %w", serviceName(from), serviceName(to-1), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, s := range slices {
		s.ResourceVersion = strconv.FormatInt(rev, 10)
		w.slices[from+k], w.ips[from+k] = s, ips[k]
	}
	return nil
}

// waitListed waits until the API server lists n Services and n
// EndpointSlices in the benchmark's namespace: a consistent list is served
// once the API server has read everything written to etcd before it.
func (w *workload) waitListed(ctx context.Context, n int) error {
	count := func(list func(context.Context, metav1.ListOptions) (int, error)) error {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			got, err := list(ctx, metav1.ListOptions{Limit: 1})
			if err == nil && got == n {
				return nil
			}
			if time.Now().After(deadline) {
				if err != nil {
					return fmt.Errorf("the API server lists none of %d: %w", n, err)
				}
				return fmt.Errorf("the API server lists %d, want %d", got, n)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	if err := count(func(ctx context.Context, o metav1.ListOptions) (int, error) {
		l, err := w.client.CoreV1().Services(benchNamespace).List(ctx, o)
		if err != nil {
			return 0, err
		}
		return len(l.Items) + int(ptr.Deref(l.RemainingItemCount, 0)), nil
	}); err != nil {
		return fmt.Errorf("services: %w", err)
	}
	if err := count(func(ctx context.Context, o metav1.ListOptions) (int, error) {
		l, err := w.client.DiscoveryV1().EndpointSlices(benchNamespace).List(ctx, o)
		if err != nil {
			return 0, err
		}
		return len(l.Items) + int(ptr.Deref(l.RemainingItemCount, 0)), nil
	}); err != nil {
		return fmt.Errorf("endpointslices: %w", err)
	}
	return nil
}

// nthAddr is base + n (IPv4).
func nthAddr(base netip.Addr, n int) netip.Addr {
	b := base.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func endpoint(ip netip.Addr) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{ip.String()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
	}
}

// freshIP is an address no endpoint used before (10.245.0.0/16: outside
// the Pod network, never dialled; only looked for in the kernel).
func (w *workload) freshIP() netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextIP++
	return netip.AddrFrom4([4]byte{10, 245, byte(w.nextIP >> 8), byte(w.nextIP)})
}

// changeEndpoint replaces the second endpoint of Service i with ip: one
// EndpointSlice update.
func (w *workload) changeEndpoint(ctx context.Context, i int, ip netip.Addr) error {
	w.mu.Lock()
	s := w.slices[i].DeepCopy()
	w.mu.Unlock()
	s.Endpoints[1] = endpoint(ip)
	// As the EndpointSlice controller does: the latency series of both
	// proxies time the change from here.
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[corev1.EndpointsLastChangeTriggerTime] = time.Now().Format(time.RFC3339Nano)
	got, err := w.client.DiscoveryV1().EndpointSlices(benchNamespace).Update(ctx, s, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update endpointslice %s: %w", s.Name, err)
	}
	w.mu.Lock()
	w.slices[i] = got
	w.mu.Unlock()
	return nil
}

func (w *workload) clusterIP(i int) netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ips[i]
}

// startPod creates a Pod the cluster's simulator runs (an echo server on
// podPort) and waits until it is Running with an IP.
func startPod(ctx context.Context, client kubernetes.Interface, name, node string) (netip.Addr, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace, Labels: map[string]string{"app": "bench-echo"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "echo",
				Image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
				Args:  []string{"netexec", fmt.Sprintf("--http-port=%d", podPort)},
				Ports: []corev1.ContainerPort{{ContainerPort: podPort, Protocol: corev1.ProtocolTCP}},
			}},
		},
	}
	if node != "" {
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	if _, err := client.CoreV1().Pods(benchNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return netip.Addr{}, fmt.Errorf("create pod %s: %w", name, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		p, err := client.CoreV1().Pods(benchNamespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			return netip.ParseAddr(p.Status.PodIP)
		}
		select {
		case <-ctx.Done():
			return netip.Addr{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return netip.Addr{}, errors.New("pod " + name + " not running after 60s")
}
