//go:build e2e

package faults

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// The cluster every test shares, and what TestMain puts in it.
var (
	c *cluster.Cluster

	// ns holds the shared workload: one echo Pod per node (web-nodeN,
	// app=web, TCP 8080), Service web (NodePort, 80 → 8080), Service
	// canary (ClusterIP, 80 → 8080) and bulkServices selector-less
	// Services bulk-NNN with hand-made EndpointSlices, so that every
	// node's view is large enough for a full re-send to show in bytes.
	ns          = "faults"
	webIP       string // ClusterIP of web
	webNodePort int32
	canaryIP    string
)

const (
	bulkServices = 150
	// Agents list both control-plane replicas; the second is started
	// only by the failover test.
	webPort = 80
)

func TestMain(m *testing.M) {
	os.Exit(provider.RunCluster(m, "faults", cluster.Config{
		Nodes: 3,
		Proxy: cluster.ProxyDoorman,
		AgentArgs: []string{
			// Both replicas, tried in turn; the Go flag package keeps the
			// last value of a repeated flag.
			"--control-plane=" + cluster.GatewayIP + fmt.Sprintf(":%d,", cluster.ControlPlanePort) +
				cluster.GatewayIP + fmt.Sprintf(":%d", cluster.ControlPlaneReplicaPort),
			"--log-level=debug",
		},
		ControlPlaneArgs: []string{"--log-level=debug"},
	}, start))
}

// start keeps the started cluster in c and sets the workload up.
func start(ctx context.Context, cl *cluster.Cluster) error {
	c = cl
	fmt.Fprintln(os.Stderr, "faults: cluster up; logs in", cl.LogDir())
	t0 := time.Now()
	if err := setup(ctx); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "faults: workload ready in", time.Since(t0).Round(time.Millisecond))
	return nil
}

// setup creates the shared workload and waits until every agent holds it.
func setup(ctx context.Context) error {
	cs := c.Client()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := retry.Until(ctx, time.Minute, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("default service account: %w", err)
	}
	for _, n := range c.Nodes() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + n.Name, Namespace: ns, Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": n.Name},
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{Name: "echo", Image: "doorman.local/echo", Ports: []corev1.ContainerPort{
					{Name: "http", Protocol: corev1.ProtocolTCP, ContainerPort: 8080},
				}}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	web, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: webPort, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	webIP, webNodePort = web.Spec.ClusterIP, web.Spec.Ports[0].NodePort
	canary, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "canary", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: webPort, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	canaryIP = canary.Spec.ClusterIP

	work := make(chan int)
	errs := make(chan error, bulkServices)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs <- createBulk(ctx, i)
			}
		}()
	}
	for i := range bulkServices {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	// Every Pod ready, every agent holding every Service and acked.
	if err := retry.Until(ctx, 2*time.Minute, func() error {
		for _, n := range c.Nodes() {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, "web-"+n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.PodIP == "" {
				return fmt.Errorf("pod %s has no IP", p.Name)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return retry.Until(ctx, 2*time.Minute, func() error {
		for _, n := range c.Nodes() {
			if err := converged(ctx, n.Name, c.ControlPlaneGRPC()); err != nil {
				return err
			}
			st, err := agentState(ctx, n.Name, false)
			if err != nil {
				return err
			}
			if st.GetServicePorts() < bulkServices+2 {
				return fmt.Errorf("%s holds %d service ports", n.Name, st.GetServicePorts())
			}
		}
		for _, n := range c.Nodes() {
			dial, err := c.DialFromPod(ns, "web-"+n.Name)
			if err != nil {
				return err
			}
			if _, err := ask(ctx, dial, addr(webIP, webPort)); err != nil {
				return err
			}
		}
		return nil
	})
}

// bulkName names the i-th bulk Service.
func bulkName(i int) string { return fmt.Sprintf("bulk-%03d", i) }

func createBulk(ctx context.Context, i int) error {
	cs := c.Client()
	name := bulkName(i)
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	return setBulkEndpoints(ctx, i, 0)
}

// setBulkEndpoints writes the bulk Service's slice with two endpoints that
// depend on gen: a new gen changes its view entry (one key).
func setBulkEndpoints(ctx context.Context, i, gen int) error {
	cs := c.Client()
	name := bulkName(i)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name + "-1",
			Namespace: ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   "faults.e2e.doorman",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for k := 1; k <= 2; k++ {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{fmt.Sprintf("10.%d.%d.%d", 200+gen%55, i%250, k)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	old, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, slice.Name, metav1.GetOptions{})
	if err != nil {
		_, err = cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
		return err
	}
	slice.ResourceVersion = old.ResourceVersion
	_, err = cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{})
	return err
}
