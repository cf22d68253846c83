package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/retry"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

const ns = "bookstore"

type demo struct {
	p          paths
	c          *cluster.Cluster
	step       int
	pass, fail int
	shopper    corev1.Pod
	ctx        context.Context
}

func (d *demo) close() {
	if d.c != nil {
		fmt.Println("==> tearing the cluster down")
		if err := d.c.Close(); err != nil {
			fmt.Println("    tear down:", err)
		}
	}
}

const totalSteps = 7

// do runs one step and prints its verdict.
func (d *demo) do(title string, fn func() error) bool {
	d.step++
	fmt.Printf("\n==> [%d/%d] %s\n", d.step, totalSteps, title)
	if d.ctx.Err() != nil {
		d.fail++
		fmt.Println("    SKIPPED: interrupted")
		return false
	}
	t := time.Now()
	err := fn()
	el := time.Since(t).Round(10 * time.Millisecond)
	if err != nil {
		d.fail++
		fmt.Printf("    FAIL (%s): %v\n", el, err)
		return false
	}
	d.pass++
	fmt.Printf("    PASS (%s)\n", el)
	return true
}

func say(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

func (d *demo) steps(ctx context.Context) (int, int) {
	d.ctx = ctx
	ok := d.do("bring up 3 nodes: etcd, kube-apiserver, kube-controller-manager, doorman's control plane, a node agent per node", func() error {
		log := hclog.New(&hclog.LoggerOptions{Name: "demo", Level: hclog.Info, Output: os.Stdout})
		c, err := cluster.Start(ctx, cluster.Config{
			Nodes:         3,
			Prefix:        prefix,
			K8sBinDir:     d.p.k8sBin,
			DoormanBinDir: d.p.bin,
			WorkDir:       d.p.work,
			Logger:        log,
		})
		if err != nil {
			return err
		}
		d.c = c
		for _, n := range c.Nodes() {
			say("%s  netns %-10s  %s  pods %s  %s", n.Name, n.NetNS, n.IP, n.PodCIDR, n.Zone)
		}
		return nil
	})
	if !ok {
		return d.pass, d.fail
	}
	if !d.do("deploy the Bookstore", func() error { return d.deploy(ctx) }) {
		return d.pass, d.fail
	}
	d.do("calls through every ClusterIP spread over the Pods", func() error { return d.spread(ctx) })
	d.do("rollout restart of catalog while a client keeps calling: the VIP stays, no call fails", func() error { return d.rollout(ctx) })
	d.do("catalog scaled 3 → 5 and back to 3, reflected in the node's kernel", func() error { return d.scale(ctx) })
	d.do("the NodePort reached from the external namespace through every node", func() error { return d.nodePort(ctx) })
	d.do("the state pushed to a node, printed with grpcurl", func() error { return d.inspect(ctx) })
	if ctx.Err() == nil {
		d.next()
	}
	return d.pass, d.fail
}

type app struct {
	name     string
	replicas int32
	ports    []corev1.ContainerPort
}

var apps = []app{
	{"storefront", 2, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
	{"catalog", 3, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
	{"orders", 2, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
	{"redis", 1, []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}}},
	{"rabbitmq", 1, []corev1.ContainerPort{{Name: "amqp", ContainerPort: 5672}}},
	{"postgres", 1, []corev1.ContainerPort{{Name: "postgres", ContainerPort: 5432}}},
	{"shopper", 1, []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}, // the client
}

func svc(name string, mod func(*corev1.Service), ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    ports,
		},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func port(name string, p int32, target string) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, TargetPort: intstr.FromString(target), Protocol: corev1.ProtocolTCP}
}

func services() []*corev1.Service {
	return []*corev1.Service{
		svc("storefront", nil, port("http", 80, "http")),
		svc("catalog", nil, port("http", 80, "http")),
		svc("orders", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}, port("http", 80, "http")),
		svc("redis", nil, port("redis", 6379, "redis")),
		svc("rabbitmq", nil, port("amqp", 5672, "amqp")),
		svc("postgres", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }, port("postgres", 5432, "postgres")),
		svc("storefront-public", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Selector = map[string]string{"app": "storefront"}
			s.Spec.Ports[0].NodePort = 30080
		}, port("http", 80, "http")),
		svc("storefront-local", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Selector = map[string]string{"app": "storefront"}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.Ports[0].NodePort = 30081
		}, port("http", 80, "http")),
		{
			ObjectMeta: metav1.ObjectMeta{Name: "billing-db", Namespace: ns},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "billing-db.example.com"},
		},
	}
}

func (d *demo) deploy(ctx context.Context) error {
	cs := d.c.Client()
	if err := createNamespace(ctx, cs); err != nil {
		return err
	}
	for _, a := range apps {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, deployment(a), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("deployment %s: %w", a.name, err)
		}
	}
	for _, s := range services() {
		if _, err := cs.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("service %s: %w", s.Name, err)
		}
	}
	for _, a := range apps {
		if _, err := readyPods(ctx, d.c, a.name, int(a.replicas)); err != nil {
			return err
		}
	}
	pods, _ := readyPods(ctx, d.c, "shopper", 1)
	d.shopper = pods[0]
	sl, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := printServices(sl.Items); err != nil {
		return err
	}
	say("%d Pods Ready on %d nodes", countPods(apps), len(d.c.Nodes()))
	return nil
}

// createNamespace creates the demo's namespace and waits for its default
// service account, without which no Pod is admitted.
func createNamespace(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if err := retry.Until(ctx, 30*time.Second, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("default service account: %w", err)
	}
	return nil
}

// deployment is the Deployment that runs app a.
func deployment(a app) *appsv1.Deployment {
	return cluster.Deployment(ns, a.name, a.replicas, corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](3),
		Containers: []corev1.Container{{
			Name: a.name, Image: "bookstore/" + a.name + ":1.0", Ports: a.ports,
		}},
	})
}

// printServices prints a table of the Services: type, ClusterIP, ports
// and what is special about each.
func printServices(svcs []corev1.Service) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "    SERVICE\tTYPE\tCLUSTER-IP\tPORTS\tNOTE")
	for _, s := range svcs {
		var ports []string
		for _, p := range s.Spec.Ports {
			t := fmt.Sprintf("%d→%s", p.Port, p.TargetPort.String())
			if p.NodePort != 0 {
				t += fmt.Sprintf(" (node %d)", p.NodePort)
			}
			ports = append(ports, t)
		}
		_, _ = fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.Type, s.Spec.ClusterIP, strings.Join(ports, ","), serviceNote(&s))
	}
	return tw.Flush()
}

// serviceNote says what sets a Service apart, or "".
func serviceNote(s *corev1.Service) string {
	switch {
	case s.Spec.Type == corev1.ServiceTypeExternalName:
		return "CNAME " + s.Spec.ExternalName + ": nothing programmed"
	case s.Spec.ClusterIP == corev1.ClusterIPNone:
		return "headless: nothing programmed"
	case s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP:
		return "sessionAffinity ClientIP"
	case s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal:
		return "externalTrafficPolicy Local"
	}
	return ""
}

func countPods(as []app) int {
	n := 0
	for _, a := range as {
		n += int(a.replicas)
	}
	return n
}

// readyPods waits until app has exactly n Ready Pods and their
// EndpointSlices list them.
func readyPods(ctx context.Context, c *cluster.Cluster, app string, n int) ([]corev1.Pod, error) {
	var pods []corev1.Pod
	err := retry.Until(ctx, 2*time.Minute, func() error {
		pl, err := c.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return err
		}
		pods = pods[:0]
		for _, p := range pl.Items {
			if p.DeletionTimestamp == nil && p.Status.PodIP != "" && isReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) != n || len(pl.Items) != n {
			return fmt.Errorf("%s: %d pods, %d ready, want %d", app, len(pl.Items), len(pods), n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (d *demo) clusterIP(ctx context.Context, name string) (string, int32, error) {
	s, err := d.c.Client().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", 0, err
	}
	return s.Spec.ClusterIP, s.Spec.Ports[0].Port, nil
}

// ask calls target from the shopper Pod.
func (d *demo) ask(ctx context.Context, target string) (string, error) {
	dial, err := d.c.DialFromPod(ns, d.shopper.Name)
	if err != nil {
		return "", err
	}
	return echo.Ask(ctx, dial, "tcp", target, "hostname")
}

func (d *demo) spread(ctx context.Context) error {
	say("from Pod %s (%s), 30 new connections to each Service:", d.shopper.Name, d.shopper.Status.PodIP)
	var errs []error
	for _, name := range []string{"storefront", "catalog", "orders", "redis", "rabbitmq"} {
		ip, p, err := d.clusterIP(ctx, name)
		if err != nil {
			return err
		}
		target := net.JoinHostPort(ip, strconv.Itoa(int(p)))
		pods, err := readyPods(ctx, d.c, name, replicasOf(name))
		if err != nil {
			return err
		}
		// Pods are Ready a moment before their EndpointSlice says so and
		// before the shopper's node has them in its kernel: wait for both.
		if err := d.programmed(ctx, d.shopper.Spec.NodeName, name, ip, pods); err != nil {
			return err
		}
		tl := askTimes(30, func() (string, error) { return d.ask(ctx, target) })
		counts := tl.counts
		say("%-10s %-18s %s", name, target, tl.perPod(pods))
		if tl.failed > 0 {
			errs = append(errs, fmt.Errorf("%s: %d of 30 calls failed: %w", name, tl.failed, tl.last))
			continue
		}
		for _, pod := range pods {
			if counts[pod.Name] == 0 && name != "orders" {
				errs = append(errs, fmt.Errorf("%s: Pod %s never answered", name, pod.Name))
			}
		}
		if len(counts) > len(pods) {
			errs = append(errs, fmt.Errorf("%s: answers from Pods outside the Service: %v", name, counts))
		}
		// sessionAffinity ClientIP: one client, one backend.
		if name == "orders" && len(counts) != 1 {
			errs = append(errs, fmt.Errorf("orders has sessionAffinity ClientIP, yet one client reached %d Pods: %v", len(counts), counts))
		}
	}
	say("(orders has sessionAffinity ClientIP: every call from one client lands on one Pod)")
	return errors.Join(errs...)
}

// tally counts the answers of repeated calls by Pod name, and the calls
// that failed.
type tally struct {
	counts map[string]int
	failed int
	last   error // the last failure's
}

// askTimes calls ask n times and tallies the answers.
func askTimes(n int, ask func() (string, error)) tally {
	t := tally{counts: map[string]int{}}
	for range n {
		got, err := ask()
		if err != nil {
			t.failed++
			t.last = err
			continue
		}
		t.counts[got]++
	}
	return t
}

// perPod is how many answers came from each of pods: "abcde=3 fghij=2".
func (t tally) perPod(pods []corev1.Pod) string {
	var parts []string
	for _, p := range pods {
		parts = append(parts, fmt.Sprintf("%s=%d", shortName(p.Name), t.counts[p.Name]))
	}
	return strings.Join(parts, " ")
}

func replicasOf(name string) int {
	for _, a := range apps {
		if a.name == name {
			return int(a.replicas)
		}
	}
	return 0
}

func shortName(pod string) string {
	if i := strings.LastIndexByte(pod, '-'); i >= 0 {
		return pod[i+1:]
	}
	return pod
}

func (d *demo) rollout(ctx context.Context) error {
	ip, p, err := d.clusterIP(ctx, "catalog")
	if err != nil {
		return err
	}
	target := net.JoinHostPort(ip, strconv.Itoa(int(p)))
	before, err := readyPods(ctx, d.c, "catalog", 3)
	if err != nil {
		return err
	}
	calls := d.callEvery(ctx, target, 20*time.Millisecond)
	say("calling %s every 20ms from %s; kubectl rollout restart deployment/catalog", target, d.shopper.Name)
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339))
	if _, err := d.c.Client().AppsV1().Deployments(ns).Patch(ctx, "catalog", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		calls.stop()
		return err
	}
	after, err := replaced(ctx, d, before)
	// Keep calling a moment on the new set.
	time.Sleep(time.Second)
	calls.stop()
	if err != nil {
		return err
	}
	say("old Pods %s → new Pods %s", names(before), names(after))
	say("%d calls answered, %d failed; ClusterIP %s unchanged", calls.ok.Load(), calls.failed.Load(), ip)
	if calls.failed.Load() > 0 {
		return fmt.Errorf("%d calls failed during the rollout, first: %w", calls.failed.Load(), calls.firstErr)
	}
	if ip2, _, _ := d.clusterIP(ctx, "catalog"); ip2 != ip {
		return fmt.Errorf("ClusterIP changed from %s to %s", ip, ip2)
	}
	return nil
}

// replaced waits until the catalog's three ready Pods are all new ones.
func replaced(ctx context.Context, d *demo, before []corev1.Pod) ([]corev1.Pod, error) {
	oldNames := map[string]bool{}
	for _, p := range before {
		oldNames[p.Name] = true
	}
	var after []corev1.Pod
	err := retry.Until(ctx, 2*time.Minute, func() error {
		pods, err := readyPods(ctx, d.c, "catalog", 3)
		if err != nil {
			return err
		}
		for _, p := range pods {
			if oldNames[p.Name] {
				return fmt.Errorf("old pod %s still there", p.Name)
			}
		}
		after = pods
		return nil
	})
	return after, err
}

// caller calls a target at a fixed pace until stopped, counting answers
// and failures.
type caller struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   error
	seen       map[string]int
	quit, done chan struct{}
}

func (d *demo) callEvery(ctx context.Context, target string, every time.Duration) *caller {
	c := &caller{seen: map[string]int{}, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.quit:
				return
			case <-time.After(every):
			}
			got, err := d.ask(ctx, target)
			c.mu.Lock()
			if err != nil {
				c.failed.Add(1)
				if c.firstErr == nil {
					c.firstErr = err
				}
			} else {
				c.ok.Add(1)
				c.seen[got]++
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// stop ends the calls and waits for the last.
func (c *caller) stop() {
	close(c.quit)
	<-c.done
}

func names(pods []corev1.Pod) string {
	var s []string
	for _, p := range pods {
		s = append(s, shortName(p.Name))
	}
	return strings.Join(s, ",")
}

func (d *demo) scale(ctx context.Context) error {
	clusterIP, _, err := d.clusterIP(ctx, "catalog")
	if err != nil {
		return err
	}
	for _, n := range []int32{5, 3} {
		say("kubectl scale deployment/catalog --replicas=%d", n)
		scale, err := d.c.Client().AppsV1().Deployments(ns).GetScale(ctx, "catalog", metav1.GetOptions{})
		if err != nil {
			return err
		}
		scale.Spec.Replicas = n
		if _, err := d.c.Client().AppsV1().Deployments(ns).UpdateScale(ctx, "catalog", scale, metav1.UpdateOptions{}); err != nil {
			return err
		}
		pods, err := readyPods(ctx, d.c, "catalog", int(n))
		if err != nil {
			return err
		}
		node := d.c.Nodes()[0].Name
		if err := d.programmed(ctx, node, "catalog", clusterIP, pods); err != nil {
			return err
		}
		say("EndpointSlice: %d ready; %s agent view: %d endpoints; %s kernel: %d catalog endpoint elements", n, node, n, node, n)
	}
	return nil
}

// programmed waits until svc's EndpointSlices list the Pods as ready and
// the agent on node holds them, in its view and in its kernel (behind
// clusterIP).
func (d *demo) programmed(ctx context.Context, node, svc, clusterIP string, pods []corev1.Pod) error {
	n := len(pods)
	if err := retry.Until(ctx, time.Minute, func() error { return d.sliceHas(ctx, svc, n) }); err != nil {
		return fmt.Errorf("%s: %w", svc, err)
	}
	return retry.Until(ctx, 30*time.Second, func() error {
		state, kernel, err := d.agentCounts(ctx, node, svc, clusterIP, pods)
		if err != nil {
			return err
		}
		if state != n || kernel != n {
			return fmt.Errorf("agent on %s: %d %s endpoints in its view, %d in the kernel, want %d", node, state, svc, kernel, n)
		}
		return nil
	})
}

func (d *demo) sliceHas(ctx context.Context, svc string, n int) error {
	ready, err := cluster.ReadyEndpoints(ctx, d.c.Client(), ns, svc)
	if err != nil {
		return err
	}
	if ready != n {
		return fmt.Errorf("%d ready endpoints, want %d", ready, n)
	}
	return nil
}

// agentCounts asks a node's agent (Inspect, on its unix socket) how many
// endpoints of svc its view has and how many of the kernel's endpoint
// elements of svc's ClusterIP point at svc's Pods.
func (d *demo) agentCounts(ctx context.Context, node, svc, clusterIP string, pods []corev1.Pod) (int, int, error) {
	conn, err := grpc.NewClient("unix://"+d.c.AgentInspectSocket(node),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = conn.Close() }()
	cl := doormanv1.NewAgentInspectServiceClient(conn)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cl.GetState(cctx, &doormanv1.GetStateRequest{Entries: true})
	if err != nil {
		return 0, 0, fmt.Errorf("agent GetState: %w", err)
	}
	state := 0
	for _, e := range st.GetEntries() {
		sp := e.GetServicePort()
		if sp != nil && sp.GetNamespace() == ns && sp.GetName() == svc {
			state += len(sp.GetEndpoints())
		}
	}
	k, err := cl.GetKernel(cctx, &doormanv1.GetKernelRequest{Elements: true})
	if err != nil {
		return 0, 0, fmt.Errorf("agent GetKernel: %w", err)
	}
	kernel := 0
	for _, m := range k.GetMaps() {
		if m.GetName() != "service-endpoints" {
			continue
		}
		for _, el := range m.GetElements() {
			if !containsIP(el, clusterIP) {
				continue
			}
			for _, p := range pods {
				if containsIP(el, p.Status.PodIP) {
					kernel++
				}
			}
		}
	}
	return state, kernel, nil
}

// containsIP reports whether ip appears in s as a whole address.
func containsIP(s, ip string) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], ip)
		if j < 0 {
			return false
		}
		end := i + j + len(ip)
		startOK := i+j == 0 || !isAddrChar(s[i+j-1])
		endOK := end == len(s) || !isDigit(s[end])
		if startOK && endOK {
			return true
		}
		i = end
	}
}

func isDigit(b byte) bool    { return b >= '0' && b <= '9' }
func isAddrChar(b byte) bool { return isDigit(b) || b == '.' }

func (d *demo) nodePort(ctx context.Context) error {
	pods, err := readyPods(ctx, d.c, "storefront", 2)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, p := range pods {
		valid[p.Name] = true
	}
	say("from the external namespace (%s), 10 connections to <node>:30080 per node:", cluster.ExternalIP)
	var errs []error
	for _, n := range d.c.Nodes() {
		target := net.JoinHostPort(n.IP, "30080")
		tl := askTimes(10, func() (string, error) {
			got, err := echo.Ask(ctx, d.c.DialFromExternal(), "tcp", target, "hostname")
			if err == nil && !valid[got] {
				err = fmt.Errorf("answer from %q, no storefront Pod", got)
			}
			return got, err
		})
		local := "no storefront Pod on it"
		for _, p := range pods {
			if p.Spec.NodeName == n.Name {
				local = "runs a storefront Pod"
			}
		}
		say("%s %-18s %s  (%s)", n.Name, target, tl.perPod(pods), local)
		if tl.failed > 0 {
			errs = append(errs, fmt.Errorf("via %s: %d of 10 failed: %w", n.Name, tl.failed, tl.last))
		}
	}
	return errors.Join(errs...)
}

func (d *demo) grpcurl(ctx context.Context, netnsName string, args ...string) (string, error) {
	argv := append([]string{"tool", "-modfile=tools/go.mod", "grpcurl", "-plaintext"}, args...)
	var cmd *exec.Cmd
	if netnsName != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netnsName, "go"}, argv...)...)
	} else {
		cmd = exec.CommandContext(ctx, "go", argv...)
	}
	cmd.Dir = d.p.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("grpcurl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (d *demo) inspect(ctx context.Context) error {
	cp := d.c.ControlPlaneGRPC()
	say("$ grpcurl -plaintext %s doorman.v1.InspectService/ListNodes", cp)
	out, err := d.grpcurl(ctx, "", cp, "doorman.v1.InspectService/ListNodes")
	if err != nil {
		return err
	}
	printIndented(out, 40)
	say("$ grpcurl -plaintext -d '{\"namespace\":\"bookstore\",\"name\":\"catalog\"}' %s doorman.v1.InspectService/GetService", cp)
	out, err = d.grpcurl(ctx, "", "-d", `{"namespace":"bookstore","name":"catalog"}`, cp, "doorman.v1.InspectService/GetService")
	if err != nil {
		return err
	}
	printIndented(out, 40)
	node := d.c.Nodes()[0]
	sock := d.c.AgentInspectSocket(node.Name)
	say("$ grpcurl -plaintext -unix %s doorman.v1.AgentInspectService/GetKernel", sock)
	out, err = d.grpcurl(ctx, "", "-unix", sock, "doorman.v1.AgentInspectService/GetKernel")
	if err != nil {
		return err
	}
	printIndented(out, 40)
	return nil
}

func printIndented(s string, max int) {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if i == max {
			fmt.Printf("      … %d more lines\n", len(lines)-max)
			break
		}
		fmt.Println("      " + l)
	}
}

func (d *demo) next() {
	n := d.c.Nodes()[0]
	fmt.Printf(`
==> done: %d passed, %d failed. The cluster stays up; try:

    export KUBECONFIG=%s
    %s/kubectl get pods,svc,endpointslices -n bookstore -o wide
    %s/kubectl scale -n bookstore deployment/catalog --replicas=4

    # what the control plane pushed, and to whom
    go tool -modfile=tools/go.mod grpcurl -plaintext %s list
    go tool -modfile=tools/go.mod grpcurl -plaintext -d '{"node_name":"%s"}' %s doorman.v1.InspectService/GetNodeView

    # what a node's agent holds and what its kernel has (its unix socket)
    go tool -modfile=tools/go.mod grpcurl -plaintext -unix -d '{"elements":true}' %s doorman.v1.AgentInspectService/GetKernel

    # be a Pod-less client outside the cluster
    ip netns exec %s curl -s http://%s:30080/hostname

    logs: %s
    tear down: make demo-down
`, d.pass, d.fail, d.c.Kubeconfig(), d.p.k8sBin, d.p.k8sBin,
		d.c.ControlPlaneGRPC(), n.Name, d.c.ControlPlaneGRPC(),
		d.c.AgentInspectSocket(n.Name),
		d.c.ExternalNetNS(), n.IP, d.c.LogDir())
}
