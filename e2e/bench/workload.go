package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

const (
	benchNamespace = "bench"
	managedBy      = "bench.doorman-proxy.io"
	servicePort    = 80
	podPort        = 8080
)

// workload is the benchmark's Services: selector-less, each with one
// hand-made EndpointSlice of two endpoints, so no Pod per Service is
// needed and an endpoint change is one API write.
type workload struct {
	client  kubernetes.Interface
	workers int

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

// grow creates Services (and their slices) until there are n, with a
// bounded pool of parallel writers.
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
	for range w.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := w.create(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

func (w *workload) create(ctx context.Context, i int) error {
	name := serviceName(i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: benchNamespace},
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: servicePort, TargetPort: intstr.FromInt32(podPort)}},
		},
	}
	got, err := retryCreate(ctx, func() (*corev1.Service, error) {
		return w.client.CoreV1().Services(benchNamespace).Create(ctx, svc, metav1.CreateOptions{})
	})
	if err != nil {
		return fmt.Errorf("create service %s: %w", name, err)
	}
	ip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return fmt.Errorf("service %s cluster IP %q: %w", name, got.Spec.ClusterIP, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name + "-bench",
			Namespace: benchNamespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   managedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{endpoint(w.eps[0]), endpoint(w.eps[1])},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](podPort)}},
	}
	gotSlice, err := retryCreate(ctx, func() (*discoveryv1.EndpointSlice, error) {
		return w.client.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, slice, metav1.CreateOptions{})
	})
	if err != nil {
		return fmt.Errorf("create endpointslice %s: %w", slice.Name, err)
	}
	w.mu.Lock()
	w.slices[i], w.ips[i] = gotSlice, ip
	w.mu.Unlock()
	return nil
}

// retryCreate retries a create the API server throttled; an object that
// already exists from an earlier run of the same size is an error (the
// cluster is fresh for every run).
func retryCreate[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err == nil || !apierrors.IsTooManyRequests(err) && !apierrors.IsServerTimeout(err) && !apierrors.IsTimeout(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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
