//go:build e2e

package kind

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/promtext"
	"github.com/doorman-proxy/doorman/e2e/provider"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// doormanNS is where deploy/ puts doorman.
const doormanNS = "doorman-system"

// kubectl runs the pinned kubectl against the cluster and returns its
// standard output; a failure fails the test with what kubectl said.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectlErr(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func kubectlErr(args ...string) (string, error) {
	cmd := exec.Command(kubectlBin, append([]string{"--kubeconfig", prov.Kubeconfig()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// repoRoot is the module's root, where deploy/ and tools/ are.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("find the repository: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// testNamespace makes a namespace for one test and deletes it afterwards.
func testNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		err := cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

const echoPort = 8080

var echoPorts = []corev1.ContainerPort{{Name: "http", ContainerPort: echoPort, Protocol: corev1.ProtocolTCP}}

// backends runs replicas echo Pods behind a ClusterIP Service name:80,
// spread over the nodes, and returns the Service's address once every
// Pod is ready.
func backends(t *testing.T, ns, name string, replicas int32) string {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	d := cluster.Deployment(ns, name, replicas, corev1.PodSpec{
		Containers: []corev1.Container{prov.EchoContainer(echoPorts...)},
		TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: labels},
		}},
		Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
	})
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create deployment %s/%s: %v", ns, name, err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(echoPort), Protocol: corev1.ProtocolTCP}},
		},
	}
	created, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	waitDeploymentReady(t, ns, name, 3*time.Minute)
	return net.JoinHostPort(created.Spec.ClusterIP, "80")
}

func waitDeploymentReady(t *testing.T, ns, name string, timeout time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.ReadyReplicas == want && d.Status.Replicas == want, nil
	})
	if err != nil {
		t.Fatalf("deployment %s/%s not ready within %s: %v", ns, name, timeout, err)
	}
}

// clients runs one echo Pod on every node and returns an asker per Pod.
func clients(t *testing.T, ns string) []provider.Asker {
	t.Helper()
	ctx := context.Background()
	var names []string
	for _, n := range prov.Nodes() {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client-" + n.Name, Namespace: ns, Labels: map[string]string{"role": "client"}},
			Spec: corev1.PodSpec{
				NodeName:    n.Name,
				Containers:  []corev1.Container{prov.EchoContainer(echoPorts...)},
				Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s/%s: %v", ns, p.Name, err)
		}
		names = append(names, p.Name)
	}
	var out []provider.Asker
	for _, name := range names {
		var pod *corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = p
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("pod %s/%s not ready: %v", ns, name, err)
		}
		a, err := prov.FromPod(pod)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// load calls one Service from every client Pod, new connection after new
// connection, and holds one long-lived connection per client that it asks
// every 200 ms, until stopped. A failed call is one the Pod made and that
// got no answer; a call the test could not hand to the Pod (the API
// server's proxy failed) is counted apart, as it says nothing about
// doorman.
type load struct {
	attempted, failed, unasked atomic.Int64
	flowAsks, flowFailed       atomic.Int64
	cancel                     context.CancelFunc
	wg                         sync.WaitGroup
	mu                         sync.Mutex
	firstErrors                []string
}

func startLoad(t *testing.T, askers []provider.Asker, addr string) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for _, a := range askers {
		// Warm up: the Service answers from here before the load counts.
		if err := askUntil(a, addr, time.Minute); err != nil {
			cancel()
			t.Fatalf("before the load: %v", err)
		}
		flow, err := a.OpenFlow(ctx, "tcp", addr)
		if err != nil {
			cancel()
			t.Fatalf("open a long-lived connection from %s to %s: %v", a.Where(), addr, err)
		}
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				actx, acancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := a.Ask(actx, "tcp", addr, "hostname")
				acancel()
				if ctx.Err() != nil {
					return
				}
				l.count(&l.attempted, &l.failed, a, err)
			}
		}()
		go func() {
			defer l.wg.Done()
			defer func() { _ = flow.Close() }()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				actx, acancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := flow.Ask(actx, "hostname")
				acancel()
				if ctx.Err() != nil {
					return
				}
				l.count(&l.flowAsks, &l.flowFailed, a, err)
			}
		}()
	}
	return l
}

func (l *load) count(attempted, failed *atomic.Int64, a provider.Asker, err error) {
	if err != nil && errors.Is(err, provider.ErrNotAsked) {
		l.unasked.Add(1)
		return
	}
	attempted.Add(1)
	if err == nil {
		return
	}
	failed.Add(1)
	l.mu.Lock()
	if len(l.firstErrors) < 5 {
		l.firstErrors = append(l.firstErrors, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), a.Where(), err))
	}
	l.mu.Unlock()
}

// stop ends the load and reports it; it returns the failed count of new
// and of long-lived connections.
func (l *load) stop(t *testing.T, what string) (failed, flowFailed int64) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	t.Logf("%s: %d of %d connections failed; long-lived connections: %d of %d calls failed; %d calls not handed to a Pod (API server proxy)",
		what, l.failed.Load(), l.attempted.Load(), l.flowFailed.Load(), l.flowAsks.Load(), l.unasked.Load())
	fmt.Printf("e2e-kind: %s: %d failed of %d connections attempted, %d failed of %d calls on long-lived connections\n",
		what, l.failed.Load(), l.attempted.Load(), l.flowFailed.Load(), l.flowAsks.Load())
	for _, e := range l.firstErrors {
		t.Logf("  %s", e)
	}
	return l.failed.Load(), l.flowFailed.Load()
}

// askUntil waits until addr answers from a.
func askUntil(a provider.Asker, addr string, timeout time.Duration) error {
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, last = a.Ask(actx, "tcp", addr, "hostname")
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s does not answer from %s within %s: %w", addr, a.Where(), timeout, last)
	}
	return nil
}

// inspectToken is a token of audience doorman for a ServiceAccount that
// may list Services and EndpointSlices, which Inspect asks for.
func inspectToken(t *testing.T, ns string) string {
	t.Helper()
	ctx := context.Background()
	name := "doorman-inspect"
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create serviceaccount %s/%s: %v", ns, name, err)
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + ns + "-inspect"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
		},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create clusterrole %s: %v", role.Name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create clusterrolebinding %s: %v", binding.Name, err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
		_ = cs.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{Audiences: []string{"doorman"}, ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// grpcurl calls a control-plane replica's gRPC port the way an operator
// does: `kubectl port-forward` to the Pod, grpcurl with the CA doorman
// publishes, the name on its certificate and a bearer token.
type grpcurl struct {
	root, caFile, token string
}

func newGRPCurl(t *testing.T, ns string) *grpcurl {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(doormanNS).Get(context.Background(), "doorman-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("configmap %s/doorman-ca: %v", doormanNS, err)
	}
	ca := t.TempDir() + "/ca.crt"
	if err := os.WriteFile(ca, []byte(cm.Data["ca.crt"]), 0o600); err != nil {
		t.Fatal(err)
	}
	return &grpcurl{root: repoRoot(t), caFile: ca, token: inspectToken(t, ns)}
}

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 9400`)

// call runs grpcurl against pod's port 9400 and returns its output.
func (g *grpcurl) call(t *testing.T, pod, method, data string) string {
	t.Helper()
	pf := exec.Command(kubectlBin, "--kubeconfig", prov.Kubeconfig(), "-n", doormanNS, "port-forward", "pod/"+pod, "0:9400")
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var pfErr bytes.Buffer
	pf.Stderr = &pfErr
	if err := pf.Start(); err != nil {
		t.Fatalf("kubectl port-forward: %v", err)
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
		close(port)
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(30 * time.Second):
	}
	if p == "" {
		t.Fatalf("kubectl port-forward to %s: no port (%s)", pod, strings.TrimSpace(pfErr.String()))
	}
	args := []string{"tool", "-modfile=tools/go.mod", "grpcurl",
		"-cacert", g.caFile, "-servername", "doorman-controlplane.doorman-system.svc",
		"-H", "authorization: Bearer " + g.token}
	if data != "" {
		args = append(args, "-d", data)
	}
	args = append(args, "127.0.0.1:"+p, method)
	cmd := exec.Command("go", args...)
	cmd.Dir = g.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %s on %s: %v\n%s", method, pod, err, out)
	}
	return string(out)
}

// nodeStatus is InspectService/ListNodes' answer for one node, as grpcurl
// prints it (protojson: 64-bit numbers are strings).
type nodeStatus struct {
	Name           string `json:"name"`
	Connected      bool   `json:"connected"`
	DesiredVersion string `json:"desiredVersion"`
	AckedVersion   string `json:"ackedVersion"`
	LastNack       string `json:"lastNack"`
}

func (g *grpcurl) listNodes(t *testing.T, pod string) []nodeStatus {
	t.Helper()
	out := g.call(t, pod, "doorman.v1.InspectService/ListNodes", "")
	var resp struct {
		Nodes []nodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("ListNodes on %s: %v\n%s", pod, err, out)
	}
	return resp.Nodes
}

// viewBytes is the size of node's whole view as the replica pod holds it:
// what a full re-send would carry.
func (g *grpcurl) viewBytes(t *testing.T, pod, node string) int {
	t.Helper()
	out := g.call(t, pod, "doorman.v1.InspectService/GetNodeView", `{"node_name":"`+node+`"}`)
	var v doormanv1.GetNodeViewResponse
	if err := protojson.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("GetNodeView %s on %s: %v", node, pod, err)
	}
	n := 0
	for _, e := range v.GetEntries() {
		n += proto.Size(e)
	}
	return n
}

// controlPlanePods lists the control plane's running Pods.
func controlPlanePods(t *testing.T) []corev1.Pod {
	t.Helper()
	pl, err := cs.CoreV1().Pods(doormanNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=doorman-controlplane"})
	if err != nil {
		t.Fatalf("list control-plane pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range pl.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p)
		}
	}
	return out
}

// connectedTo reports, for each running control-plane Pod, the nodes
// whose agents hold a stream to it and have acknowledged what it sent.
func connectedTo(t *testing.T, g *grpcurl) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, p := range controlPlanePods(t) {
		for _, n := range g.listNodes(t, p.Name) {
			if n.Connected && n.AckedVersion != "" && n.AckedVersion == n.DesiredVersion {
				out[p.Name] = append(out[p.Name], n.Name)
			}
		}
	}
	return out
}

// waitAllConnected waits until every node's agent is connected to some
// replica and has acknowledged its newest version.
func waitAllConnected(t *testing.T, g *grpcurl, timeout time.Duration) map[string][]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn := connectedTo(t, g)
		n := 0
		for _, nodes := range conn {
			n += len(nodes)
		}
		if n == len(prov.Nodes()) {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, agents connected and up to date: %v; want all %d nodes", timeout, conn, len(prov.Nodes()))
		}
		time.Sleep(time.Second)
	}
}

// agentMetrics reads the node agent's Prometheus metrics on the node's
// address (the agent runs on the host network).
func agentMetrics(t *testing.T, nodeIP string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(nodeIP, "10249") + "/metrics")
	if err != nil {
		t.Fatalf("agent metrics on %s: %v", nodeIP, err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := promtext.Sums(resp.Body)
	if err != nil {
		t.Fatalf("agent metrics on %s: %v", nodeIP, err)
	}
	return out
}

// nodeTables lists the nftables tables in a kind node's network
// namespace (the node is a Docker container).
func nodeTables(t *testing.T, node string) string {
	t.Helper()
	out, err := exec.Command("docker", "exec", node, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables on %s: %v\n%s", node, err, out)
	}
	return string(out)
}
