//go:build e2e

package suite

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sretry "k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// namespace creates a fresh namespace, deleted when the test ends, and
// waits for its default ServiceAccount (Pods need it).
func namespace(t *testing.T) string {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "e2e-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-") + "-" + hex.EncodeToString(b[:])
	ctx := context.Background()
	cs := prov.Client()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	retry.Eventually(t, 30*time.Second, "default service account in "+name, func() error {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	return name
}

// everyNode lets a test's Pods run on every node, control-plane nodes
// included (kubeadm taints them NoSchedule): tests pin Pods to nodes by
// name and count on the first node being usable, as it is on the netns
// cluster.
var everyNode = []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}

// echoDeployment creates a Deployment of echo Pods labelled app=name and
// waits for all its Pods to be Ready. It returns the Pods.
func echoDeployment(t *testing.T, ns, name string, replicas int32, ports ...corev1.ContainerPort) []corev1.Pod {
	t.Helper()
	ctx := context.Background()
	d := cluster.Deployment(ns, name, replicas, corev1.PodSpec{
		Containers:                    []corev1.Container{prov.EchoContainer(ports...)},
		TerminationGracePeriodSeconds: ptr.To[int64](2),
		Tolerations:                   everyNode,
	})
	if _, err := prov.Client().AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	return readyPods(t, ns, "app="+name, int(replicas))
}

// readyPods waits until exactly n Pods match selector, all Ready.
func readyPods(t *testing.T, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	retry.Eventually(t, 2*time.Minute, fmt.Sprintf("%d ready pods %s in %s", n, selector, ns), func() error {
		pl, err := prov.Client().CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range pl.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) != n || len(pl.Items) != n {
			return fmt.Errorf("%d pods, %d ready", len(pl.Items), len(pods))
		}
		return nil
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.Status.PodIP != ""
		}
	}
	return false
}

// service creates a Service selecting app=app.
func service(t *testing.T, ns, name, app string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": app},
			Ports:    ports,
		},
	}
	got, err := prov.Client().CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	return got
}

func tcpPort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}
}

func udpPort(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolUDP, Port: port, TargetPort: intstr.FromInt32(target)}
}

func containerPort(name string, proto corev1.Protocol, port int32) corev1.ContainerPort {
	return corev1.ContainerPort{Name: name, Protocol: proto, ContainerPort: port}
}

// readyEndpoints waits until the Service's EndpointSlices list n ready
// endpoints.
func readyEndpoints(t *testing.T, ns, svc string, n int) {
	t.Helper()
	retry.Eventually(t, time.Minute, fmt.Sprintf("%d ready endpoints of %s/%s", n, ns, svc), func() error {
		ready, err := cluster.ReadyEndpoints(context.Background(), prov.Client(), ns, svc)
		if err != nil {
			return err
		}
		if ready != n {
			return fmt.Errorf("%d ready", ready)
		}
		return nil
	})
}

func podNames(pods []corev1.Pod) map[string]bool {
	m := map[string]bool{}
	for _, p := range pods {
		m[p.Name] = true
	}
	return m
}

func addr(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

// The helpers below serve the Semantics tests: they send traffic from
// Pods, nodes and the external client through the provider and judge only
// what the Pods' echo servers answered; where they read the node agents'
// Inspect service, it is to check what is *not* programmed.

// askTimeout bounds one request: long enough for a loaded 2-core machine,
// short enough that a dropped packet fails a poll quickly.
const askTimeout = 2 * time.Second

// onlyOn marks a test (or part of one) not applicable on providers other
// than name; e2e/suite/README.md lists each with its reason.
func onlyOn(t *testing.T, name, reason string) {
	t.Helper()
	if prov.Name() != name {
		notApplicable(t, reason)
	}
}

// netnsCluster is the running netns cluster, for what only it can do
// (reason says what); the test is not applicable on other providers.
func netnsCluster(t *testing.T, reason string) *provider.NetNS {
	t.Helper()
	onlyOn(t, "netns", reason)
	return prov.(*provider.NetNS)
}

// doormanOnly skips a test (or the part of it) that reads doorman's node
// agents or restarts them, when the nodes run another proxy (the
// -e2e.proxy=kube-proxy baseline).
func doormanOnly(t *testing.T) {
	t.Helper()
	if *flagProxy != "doorman" {
		skipAs(t, "not applicable with -e2e.proxy="+*flagProxy, "reads or restarts doorman's node agents")
	}
}

// asker sends one echo request ("hostname", "clientip") over proto to
// addr from some place in the cluster.
type asker struct {
	where string
	from  provider.Asker
}

func (a asker) ask(proto, target, request string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	return a.from.Ask(ctx, proto, target, request)
}

// openFlow opens a long-lived flow (a TCP session or a connected UDP
// socket) from a's place, closed when the test ends.
func (a asker) openFlow(t *testing.T, proto, target string) *flow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	f, err := a.from.OpenFlow(ctx, proto, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &flow{what: fmt.Sprintf("%s flow from %s to %s", proto, a.where, target), f: f}
}

// flow is one long-lived flow: every request goes over the same
// five-tuple.
type flow struct {
	what string
	f    echo.Flow
}

func (f *flow) ask(request string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), askTimeout)
	defer cancel()
	return f.f.Ask(ctx, request)
}

func fromPod(t *testing.T, pod *corev1.Pod) asker {
	t.Helper()
	a, err := prov.FromPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	return asker{where: a.Where(), from: a}
}

func fromNode(t *testing.T, node string) asker {
	t.Helper()
	a, err := prov.FromNode(node)
	if err != nil {
		t.Fatal(err)
	}
	return asker{where: a.Where(), from: a}
}

func fromExternal(t *testing.T) asker {
	t.Helper()
	a := prov.FromExternal()
	return asker{where: a.Where(), from: a}
}

// waitAnswers polls until every name in want has answered target and
// nothing else has; it returns how often each answered.
func waitAnswers(t *testing.T, a asker, proto, target string, want map[string]bool) map[string]int {
	t.Helper()
	seen := map[string]int{}
	retry.Eventually(t, time.Minute, fmt.Sprintf("%s %s answered by each of %v from %s", proto, target, keys(want), a.where), func() error {
		got, err := a.ask(proto, target, "hostname")
		if err != nil {
			return err
		}
		if !want[got] {
			return fmt.Errorf("answered by %q, want one of %v", got, keys(want))
		}
		seen[got]++
		if len(seen) < len(want) {
			return fmt.Errorf("only %v answered so far", seen)
		}
		return nil
	})
	return seen
}

// waitOnly polls until n requests in a row are answered, each by a name in
// want: the set a proxy uses after a change, once the change has landed.
func waitOnly(t *testing.T, a asker, proto, target string, want map[string]bool, n int) {
	t.Helper()
	retry.Eventually(t, time.Minute, fmt.Sprintf("%d answers in a row from %v to %s %s from %s", n, keys(want), proto, target, a.where), func() error {
		for i := range n {
			got, err := a.ask(proto, target, "hostname")
			if err != nil {
				return err
			}
			if !want[got] {
				return fmt.Errorf("answer %d by %q", i, got)
			}
		}
		return nil
	})
}

// sample makes n requests and counts who answered; every one must succeed.
func sample(t *testing.T, a asker, proto, target string, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		got, err := a.ask(proto, target, "hostname")
		if err != nil {
			t.Fatal(err)
		}
		counts[got]++
	}
	return counts
}

// waitFails polls until a request fails in the way check accepts.
func waitFails(t *testing.T, a asker, proto, target, what string, check func(error) error) {
	t.Helper()
	retry.Eventually(t, time.Minute, fmt.Sprintf("%s %s from %s %s", proto, target, a.where, what), func() error {
		got, err := a.ask(proto, target, "hostname")
		if err == nil {
			return fmt.Errorf("answered by %q", got)
		}
		if errors.Is(err, provider.ErrNotAsked) {
			return err
		}
		return check(err)
	})
}

// anyError accepts every failure: the traffic went nowhere.
func anyError(error) error { return nil }

// refusedAtOnce accepts a refusal (TCP RST or ICMP port unreachable) that
// came back well before the request's timeout.
func refusedAtOnce(a asker, proto, target string) func(error) error {
	return func(error) error {
		start := time.Now()
		_, err := a.ask(proto, target, "hostname")
		took := time.Since(start)
		if err == nil {
			return errors.New("answered")
		}
		// Asked from a Pod's control endpoint, what counts is the time
		// there, not the round trip through the API server.
		if remote, ok := echo.Took(err); ok {
			took = remote
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("not refused: %w", err)
		}
		if took > askTimeout/2 {
			return fmt.Errorf("refused only after %s", took)
		}
		return nil
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// clientHost is the host part of an echo server's "clientip" answer.
func clientHost(t *testing.T, answer string) string {
	t.Helper()
	host, _, err := net.SplitHostPort(answer)
	if err != nil {
		t.Fatalf("clientip answer %q: %v", answer, err)
	}
	return host
}

// echoPod creates a bare echo Pod on node (any node when "") with labels,
// and waits for it to be Ready.
func echoPod(t *testing.T, ns, name, node string, labels map[string]string, grace int64, ports ...corev1.ContainerPort) corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{prov.EchoContainer(ports...)},
			TerminationGracePeriodSeconds: ptr.To(grace),
			Tolerations:                   everyNode,
		},
	}
	if node != "" {
		pod.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	}
	ctx := context.Background()
	if _, err := prov.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", ns, name, err)
	}
	var got *corev1.Pod
	retry.Eventually(t, time.Minute, "pod "+ns+"/"+name+" ready", func() error {
		var err error
		got, err = prov.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(got) {
			return fmt.Errorf("phase %s, not ready", got.Status.Phase)
		}
		return nil
	})
	return *got
}

// createService creates svc in ns.
func createService(t *testing.T, ns string, svc *corev1.Service) *corev1.Service {
	t.Helper()
	svc.Namespace = ns
	got, err := prov.Client().CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, svc.Name, err)
	}
	return got
}

// updateService applies mutate to the current Service, retrying on
// conflicts.
func updateService(t *testing.T, ns, name string, mutate func(*corev1.Service)) *corev1.Service {
	t.Helper()
	var out *corev1.Service
	err := k8sretry.RetryOnConflict(k8sretry.DefaultRetry, func() error {
		svc, err := prov.Client().CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(svc)
		out, err = prov.Client().CoreV1().Services(ns).Update(context.Background(), svc, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("update service %s/%s: %v", ns, name, err)
	}
	return out
}

// deletePod deletes a Pod with the given grace period (seconds).
func deletePod(t *testing.T, ns, name string, grace int64) {
	t.Helper()
	err := prov.Client().CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(grace)})
	if err != nil {
		t.Fatalf("delete pod %s/%s: %v", ns, name, err)
	}
}

// slices lists the Service's EndpointSlices.
func slices(t *testing.T, ns, svc string) []discoveryv1.EndpointSlice {
	t.Helper()
	sl, err := prov.Client().DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		t.Fatalf("list endpoint slices of %s/%s: %v", ns, svc, err)
	}
	return sl.Items
}

// waitEndpoint polls until the Service's slices show the endpoint of
// podIP with the given conditions.
func waitEndpoint(t *testing.T, ns, svc, podIP string, ready, serving, terminating bool) {
	t.Helper()
	retry.Eventually(t, time.Minute, fmt.Sprintf("endpoint %s of %s/%s ready=%t serving=%t terminating=%t", podIP, ns, svc, ready, serving, terminating), func() error {
		for _, s := range slices(t, ns, svc) {
			for _, e := range s.Endpoints {
				if len(e.Addresses) == 0 || e.Addresses[0] != podIP {
					continue
				}
				c := e.Conditions
				if ptr.Deref(c.Ready, false) == ready && ptr.Deref(c.Serving, false) == serving && ptr.Deref(c.Terminating, false) == terminating {
					return nil
				}
				return fmt.Errorf("conditions ready=%v serving=%v terminating=%v", ptr.Deref(c.Ready, false), ptr.Deref(c.Serving, false), ptr.Deref(c.Terminating, false))
			}
		}
		return errors.New("not in any slice")
	})
}

// agentInspect calls the node agent's Inspect service on node (unary
// calls only).
func agentInspect(node string, call func(context.Context, doormanv1.AgentInspectServiceClient) error) error {
	conn, closer, err := prov.AgentInspect(node)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", node, err)
	}
	defer closer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := call(ctx, doormanv1.NewAgentInspectServiceClient(conn)); err != nil {
		return fmt.Errorf("inspect %s: %w", node, err)
	}
	return nil
}

// agentKeys lists the view keys of Service ns/name the node's agent holds.
func agentKeys(node, ns, name string) ([]string, error) {
	var out []string
	err := agentInspect(node, func(ctx context.Context, c doormanv1.AgentInspectServiceClient) error {
		st, err := c.GetState(ctx, &doormanv1.GetStateRequest{Entries: true})
		if err != nil {
			return err
		}
		for _, e := range st.GetEntries() {
			if strings.HasPrefix(e.GetKey(), ns+"/"+name+":") {
				out = append(out, e.GetKey())
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// waitAgentsHold polls until every node's agent holds a key of Service
// ns/name.
func waitAgentsHold(t *testing.T, ns, name string) {
	t.Helper()
	doormanOnly(t)
	for _, n := range prov.Nodes() {
		retry.Eventually(t, time.Minute, fmt.Sprintf("agent on %s holding %s/%s", n.Name, ns, name), func() error {
			ks, err := agentKeys(n.Name, ns, name)
			if err != nil {
				return err
			}
			if len(ks) == 0 {
				return errors.New("no key")
			}
			return nil
		})
	}
}

// kernelElements returns the elements of one of doorman's maps or sets in
// the node's kernel, as nft text.
func kernelElements(node, mapName string) ([]string, error) {
	var out []string
	err := agentInspect(node, func(ctx context.Context, c doormanv1.AgentInspectServiceClient) error {
		k, err := c.GetKernel(ctx, &doormanv1.GetKernelRequest{Elements: true})
		if err != nil {
			return err
		}
		for _, m := range k.GetMaps() {
			if m.GetName() == mapName {
				out = m.GetElements()
				return nil
			}
		}
		return fmt.Errorf("no map %s in table %s", mapName, k.GetTable())
	})
	return out, err
}

// kernelHasElement reports whether a map of the node's kernel holds an
// element starting with prefix (e.g. "10.96.0.10 . tcp . 53 ").
func kernelHasElement(node, mapName, prefix string) (bool, error) {
	els, err := kernelElements(node, mapName)
	if err != nil {
		return false, err
	}
	for _, e := range els {
		if strings.HasPrefix(e, prefix) {
			return true, nil
		}
	}
	return false, nil
}

// nodeOf finds a node by name.
func nodeOf(t *testing.T, name string) provider.Node {
	t.Helper()
	for _, n := range prov.Nodes() {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %s", name)
	return provider.Node{}
}

// nodeNames lists the cluster's nodes; the test skips with fewer than min.
func nodeNames(t *testing.T, min int) []string {
	t.Helper()
	var out []string
	for _, n := range prov.Nodes() {
		out = append(out, n.Name)
	}
	if len(out) < min {
		t.Skipf("needs %d nodes, the cluster has %d", min, len(out))
	}
	return out
}

// externalAddr hands out addresses outside every cluster range for
// externalIPs and load-balancer IPs, one per call.
var externalAddrSeq atomic.Int32

func externalAddr() string {
	n := externalAddrSeq.Add(1)
	return fmt.Sprintf("10.251.%d.%d", n/250, 1+n%250)
}

// podIPOf is the Pod's address of family fam (status.podIPs).
func podIPOf(t *testing.T, pod *corev1.Pod, fam corev1.IPFamily) string {
	t.Helper()
	for _, ip := range pod.Status.PodIPs {
		if familyOf(ip.IP) == fam {
			return ip.IP
		}
	}
	t.Fatalf("pod %s/%s has no %s address: podIPs %v", pod.Namespace, pod.Name, fam, pod.Status.PodIPs)
	return ""
}

// familyOf is the IP family of an address.
func familyOf(ip string) corev1.IPFamily {
	if a, err := netip.ParseAddr(ip); err == nil && a.Is6() && !a.Is4In6() {
		return corev1.IPv6Protocol
	}
	return corev1.IPv4Protocol
}

func slicesContains(fams []corev1.IPFamily, fam corev1.IPFamily) bool {
	for _, f := range fams {
		if f == fam {
			return true
		}
	}
	return false
}

// wantFamilies checks a Service's ipFamilies and that each ClusterIP is of
// the family at the same index.
func wantFamilies(t *testing.T, svc *corev1.Service, want []corev1.IPFamily) {
	t.Helper()
	if fmt.Sprint(svc.Spec.IPFamilies) != fmt.Sprint(want) || len(svc.Spec.ClusterIPs) != len(want) {
		t.Fatalf("service %s: ipFamilies %v, clusterIPs %v; want families %v", svc.Name, svc.Spec.IPFamilies, svc.Spec.ClusterIPs, want)
	}
	for i, ip := range svc.Spec.ClusterIPs {
		if familyOf(ip) != want[i] {
			t.Fatalf("service %s: clusterIPs[%d] %s is not %s", svc.Name, i, ip, want[i])
		}
	}
}

// waitSliceAddresses polls until the ready endpoints in the Service's
// slices of family fam are exactly want (none: no such endpoint at all).
func waitSliceAddresses(t *testing.T, ns, svc string, fam corev1.IPFamily, want map[string]bool) {
	t.Helper()
	at := discoveryv1.AddressType(fam)
	retry.Eventually(t, time.Minute, fmt.Sprintf("%s endpoints of %s/%s = %v", fam, ns, svc, keys(want)), func() error {
		got := map[string]bool{}
		for _, s := range slices(t, ns, svc) {
			for _, e := range s.Endpoints {
				for _, a := range e.Addresses {
					if s.AddressType != at && familyOf(a) == fam {
						return fmt.Errorf("slice %s of type %s holds %s", s.Name, s.AddressType, a)
					}
					if s.AddressType == at && ptr.Deref(e.Conditions.Ready, false) {
						got[a] = true
					}
				}
			}
		}
		if fmt.Sprint(keys(got)) != fmt.Sprint(keys(want)) {
			return fmt.Errorf("ready %s endpoints %v", fam, keys(got))
		}
		return nil
	})
}

// waitAgentFamilies polls until every node's agent holds keys of Service
// ns/name for exactly the given families.
func waitAgentFamilies(t *testing.T, ns, name string, fams []corev1.IPFamily) {
	t.Helper()
	want := map[string]bool{}
	for _, f := range fams {
		want[strings.ToLower(string(f))] = true
	}
	for _, n := range prov.Nodes() {
		retry.Eventually(t, time.Minute, fmt.Sprintf("agent on %s holding %s/%s in families %v", n.Name, ns, name, fams), func() error {
			ks, err := agentKeys(n.Name, ns, name)
			if err != nil {
				return err
			}
			got := map[string]bool{}
			for _, k := range ks {
				got[k[strings.LastIndex(k, "/")+1:]] = true
			}
			if fmt.Sprint(keys(got)) != fmt.Sprint(keys(want)) {
				return fmt.Errorf("keys %v", ks)
			}
			return nil
		})
	}
}
