package main

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// localService is the Service of the Local traffic policy case: an
// ingress DaemonSet's, one endpoint on every node, behind a NodePort with
// externalTrafficPolicy Local.
const localService = "ingress-local"

// localPolicyChanges is how many of its endpoints change, one at a time.
const localPolicyChanges = 10

// localPolicy measures a Service with externalTrafficPolicy Local and one
// endpoint on every simulated node, its slices packed 100 endpoints each
// as the EndpointSlice controller packs them: single endpoint changes
// (time to the last agent's ACK, bytes per agent, the replicas' CPU). The
// replicas send it by node (--local-endpoints-by-node); what it would cost
// sent whole, and the memory it takes either way, are counted by
// TestLocalPolicyByNodeIsLinear (a heap reading here would be the
// collector's timing). It is deleted afterwards, so that the phases after
// it measure what they measured without it.
func (s *scaleSim) localPolicy(ctx context.Context, cps []*controlPlane) error {
	n := len(s.agents)
	svc, err := s.client.CoreV1().Services(benchNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: localService},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service %s: %w", localService, err)
	}
	portKey := fmt.Sprintf("%s/%s:http/tcp/ipv4", benchNamespace, localService)
	ips := make([]netip.Addr, n)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, 246, byte(i >> 8), byte(i)})
	}
	slices := make([]*discoveryv1.EndpointSlice, (n+99)/100)
	// Every agent holds the Service once it acked the shard of the last
	// node, whose slice is written last.
	last := ips[n-1].String()
	ct := &changeTrack{n: int64(n), done: make(chan struct{}), match: func(u *doormanv1.SyncResponse) bool {
		return carries(u, last)
	}}
	s.change.Store(ct)
	ct.start = time.Now()
	for i := range slices {
		if slices[i], err = s.client.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, localSlice(i, n, ips), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create endpointslice %s-%d: %w", localService, i, err)
		}
	}
	if err := s.await(ctx, ct, "the Local policy Service's creation"); err != nil {
		return err
	}
	fmt.Printf("local policy: a Service with an endpoint on each of %d nodes on every agent in %s\n", n, time.Since(ct.start).Round(time.Millisecond))

	cpuBefore, err := cpuSeconds(cps)
	if err != nil {
		return err
	}
	var lastAck []time.Duration
	var bytesPer []float64
	for j := range localPolicyChanges {
		node := (j*37 + 11) % n
		ip := netip.AddrFrom4([4]byte{10, 247, byte(j >> 8), byte(j)})
		ips[node] = ip
		marker := ip.String()
		ct := &changeTrack{n: int64(n), done: make(chan struct{}), match: func(u *doormanv1.SyncResponse) bool { return carries(u, marker) }}
		b0, _ := s.traffic()
		s.change.Store(ct)
		ct.start = time.Now()
		sl := localSlice(node/100, n, ips)
		sl.ResourceVersion = slices[node/100].ResourceVersion
		if slices[node/100], err = s.client.DiscoveryV1().EndpointSlices(benchNamespace).Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update endpointslice %s: %w", sl.Name, err)
		}
		if err := s.await(ctx, ct, fmt.Sprintf("local policy change %d", j)); err != nil {
			return err
		}
		ct.mu.Lock()
		lastAck = append(lastAck, percentile(ct.lats, 100))
		ct.mu.Unlock()
		time.Sleep(s.f.gap)
		b1, _ := s.traffic()
		bytesPer = append(bytesPer, float64(b1-b0)/float64(n))
	}
	cpuAfter, err := cpuSeconds(cps)
	if err != nil {
		return err
	}
	s.add(mLocalChangeP50, percentile(lastAck, 50).Seconds())
	s.add(mLocalChangeP99, percentile(lastAck, 99).Seconds())
	s.add(mLocalBytesPerChange, meanOf(bytesPer))
	s.add(mLocalCPUPerChange, (cpuAfter-cpuBefore)/localPolicyChanges)
	fmt.Printf("local policy: one endpoint change to the last ACK p50 %s p99 %s, %.0f bytes per agent, %.1f ms of control-plane CPU\n",
		percentile(lastAck, 50).Round(time.Millisecond), percentile(lastAck, 99).Round(time.Millisecond), meanOf(bytesPer),
		1000*(cpuAfter-cpuBefore)/localPolicyChanges)

	gone := &changeTrack{n: int64(n), done: make(chan struct{}), match: func(u *doormanv1.SyncResponse) bool {
		for _, k := range u.GetRemovals() {
			if k == portKey {
				return true
			}
		}
		return false
	}}
	s.change.Store(gone)
	gone.start = time.Now()
	if err := s.client.CoreV1().Services(benchNamespace).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete service %s: %w", localService, err)
	}
	for _, sl := range slices {
		if err := s.client.DiscoveryV1().EndpointSlices(benchNamespace).Delete(ctx, sl.Name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete endpointslice %s: %w", sl.Name, err)
		}
	}
	return s.await(ctx, gone, "the Local policy Service's deletion")
}

// await waits until every agent acked ct, then stops tracking it.
func (s *scaleSim) await(ctx context.Context, ct *changeTrack, what string) error {
	defer s.change.Store(nil)
	select {
	case <-ct.done:
		return nil
	case <-time.After(s.f.timeout):
		return fmt.Errorf("%s: %d of %d agents acked after %s", what, ct.acked.Load(), ct.n, s.f.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// carries reports whether an update upserts an entry with the endpoint ip.
func carries(u *doormanv1.SyncResponse, ip string) bool {
	for _, e := range u.GetUpserts() {
		for _, ep := range e.GetServicePort().GetEndpoints() {
			if ep.GetIp() == ip {
				return true
			}
		}
	}
	return false
}

// localSlice is the i-th slice of the Local policy Service: the endpoints
// of nodes 100i to 100i+99, each on its node, written with a trigger time
// as the EndpointSlice controller writes it.
func localSlice(i, nodes int, ips []netip.Addr) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("%s-%d", localService, i),
			Labels:      map[string]string{discoveryv1.LabelServiceName: localService},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().Format(time.RFC3339Nano)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(8080))}},
	}
	for n := i * 100; n < min(nodes, (i+1)*100); n++ {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{ips[n].String()},
			NodeName:   ptr.To(simNodeName(n)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return s
}
