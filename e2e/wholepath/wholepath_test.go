package wholepath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	cpapp "github.com/doorman-proxy/doorman/controlplane/app"
	"github.com/doorman-proxy/doorman/e2e/retry"
	"github.com/doorman-proxy/doorman/internal/testnet"
	agentapp "github.com/doorman-proxy/doorman/nodeagent/app"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

const (
	nodeName  = "node-1"
	nodeIP    = "10.0.1.1"
	clientIP  = "10.0.1.2"
	clusterIP = "10.96.0.10"
	nodePort  = 30080
)

// topology is one node namespace routing between a client namespace and
// three server namespaces, each server answering on :8080 with its name.
type topology struct {
	node, client *testnet.NS
	servers      map[string]string // server name → IP
}

func newTopology(t *testing.T) *topology {
	node := testnet.NewNS(t, "wp-node")
	client := testnet.NewNS(t, "wp-client")
	testnet.Link(t, node, []string{nodeIP + "/24"}, client, []string{clientIP + "/24"})
	client.AddRoute(t, "0.0.0.0/0", nodeIP)
	node.EnableForwarding(t)
	top := &topology{node: node, client: client, servers: map[string]string{}}
	for i, name := range []string{"server-a", "server-b", "server-c"} {
		srv := testnet.NewNS(t, "wp-srv")
		gw := fmt.Sprintf("10.0.%d.1", i+2)
		ip := fmt.Sprintf("10.0.%d.2", i+2)
		testnet.Link(t, node, []string{gw + "/24"}, srv, []string{ip + "/24"})
		srv.AddRoute(t, "0.0.0.0/0", gw)
		srv.TCPEcho(t, name, ip+":8080")
		top.servers[name] = ip
	}
	return top
}

func objects() (*corev1.Node, *corev1.Service, *discoveryv1.EndpointSlice) {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"topology.kubernetes.io/zone": "zone-a"}},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: nodeIP},
			{Type: corev1.NodeHostName, Address: nodeName},
		}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeNodePort,
			Selector:   map[string]string{"app": "web"},
			ClusterIP:  clusterIP,
			ClusterIPs: []string{clusterIP},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports: []corev1.ServicePort{{
				Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromString("http"), NodePort: nodePort,
			}},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
		},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-x1",
			Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	return node, svc, slice
}

func endpoints(ips ...string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, ip := range ips {
		out = append(out, discoveryv1.Endpoint{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
			NodeName:   ptr(nodeName),
		})
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// TestWholePath carries a NodePort Service from the API objects into the
// node's kernel and moves its traffic when one endpoint changes.
func TestWholePath(t *testing.T) {
	testnet.RequireRoot(t)
	top := newTopology(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := testLogger(t)

	node, svc, slice := objects()
	slice.Endpoints = endpoints(top.servers["server-a"], top.servers["server-b"])
	client := fake.NewClientset(node, svc, slice)

	cpAddr := startControlPlane(ctx, t, client, log)
	cachePath := filepath.Join(t.TempDir(), "cache.db")
	stopAgent, agentAddr := startAgent(ctx, t, top.node, cpAddr, cachePath, log)

	// ClusterIP from the client: both endpoints answer, the client's own
	// address is preserved.
	seen := waitForBackends(t, top.client, clusterIP+":80", []string{"server-a", "server-b"}, nil)
	for name, src := range seen {
		if !strings.HasPrefix(src, clientIP+":") {
			t.Errorf("via ClusterIP %s saw client %s, want %s (no SNAT)", name, src, clientIP)
		}
	}
	// NodePort on the node's address: masqueraded, so the server sees the
	// node's address on its own link.
	seen = waitForBackends(t, top.client, fmt.Sprintf("%s:%d", nodeIP, nodePort), []string{"server-a", "server-b"}, nil)
	for name, src := range seen {
		if strings.HasPrefix(src, clientIP+":") {
			t.Errorf("via NodePort %s saw the client's own address %s, want the node's (masquerade)", name, src)
		}
	}

	// One endpoint changes: server-b leaves, server-c arrives.
	slice.Endpoints = endpoints(top.servers["server-a"], top.servers["server-c"])
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update slice: %v", err)
	}
	waitForBackends(t, top.client, clusterIP+":80", []string{"server-a", "server-c"}, []string{"server-b"})

	// The control plane reports the node as caught up; the agent's kernel
	// holds the Service.
	cp := dial(t, cpAddr)
	inspect := doormanv1.NewInspectServiceClient(cp)
	retry.Eventually(t, 20*time.Second, "node acknowledged the newest version", func() error {
		resp, err := inspect.ListNodes(ctx, &doormanv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range resp.GetNodes() {
			if n.GetName() == nodeName && n.GetConnected() && n.GetAckedVersion() >= n.GetDesiredVersion() && n.GetLag() == 0 {
				return nil
			}
		}
		return fmt.Errorf("nodes: %v", resp.GetNodes())
	})
	view, err := inspect.GetNodeView(ctx, &doormanv1.GetNodeViewRequest{NodeName: nodeName})
	if err != nil {
		t.Fatalf("GetNodeView: %v", err)
	}
	if !hasKey(view.GetEntries(), "default/web:http/tcp/ipv4") {
		t.Errorf("node view lacks default/web:http/tcp/ipv4: %v", view.GetEntries())
	}

	// grpcurl, with nothing but server reflection, lists and calls both.
	grpcurl(t, "-plaintext", cpAddr, "list").contains("doorman.v1.InspectService", "doorman.v1.AgentService")
	grpcurl(t, "-plaintext", "-d", `{"node_name":"`+nodeName+`"}`, cpAddr, "doorman.v1.InspectService/GetNodeView").
		contains(clusterIP, top.servers["server-c"])
	grpcurl(t, "-plaintext", agentAddr, "list").contains("doorman.v1.AgentInspectService")
	kernelBefore := grpcurl(t, "-plaintext", "-d", `{"elements":true}`, agentAddr, "doorman.v1.AgentInspectService/GetKernel")
	kernelBefore.contains("service-ips", clusterIP)

	// The agent restarts from its cache: traffic keeps flowing while it is
	// down, and the kernel afterwards holds what it held before.
	stopAgent()
	if _, err := top.client.DialTCP(clusterIP+":80", 2*time.Second); err != nil {
		t.Fatalf("ClusterIP stopped answering while the agent was down: %v", err)
	}
	_, agentAddr = startAgent(ctx, t, top.node, cpAddr, cachePath, log)
	agent := doormanv1.NewAgentInspectServiceClient(dial(t, agentAddr))
	retry.Eventually(t, 20*time.Second, "restarted agent loaded its cache", func() error {
		st, err := agent.GetState(ctx, &doormanv1.GetStateRequest{})
		if err != nil {
			return err
		}
		if st.GetLoadedFrom() != "cache" {
			return fmt.Errorf("loaded_from = %q, want cache", st.GetLoadedFrom())
		}
		return nil
	})
	kernelAfter := grpcurl(t, "-plaintext", "-d", `{"elements":true}`, agentAddr, "doorman.v1.AgentInspectService/GetKernel")
	if kernelAfter.out != kernelBefore.out {
		t.Errorf("kernel changed across an agent restart:\nbefore:\n%s\nafter:\n%s", kernelBefore.out, kernelAfter.out)
	}
	waitForBackends(t, top.client, clusterIP+":80", []string{"server-a", "server-c"}, []string{"server-b"})
}

func startControlPlane(ctx context.Context, t *testing.T, client *fake.Clientset, log hclog.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- cpapp.Run(ctx, cpapp.Config{
			Client:       client,
			GRPCListener: ln,
			VersionSeed:  uint64(time.Now().UnixMicro()),
			Logger:       log.Named("controlplane"),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("control plane: %v", err)
		}
	})
	return ln.Addr().String()
}

// startAgent runs a node agent for the node namespace; the returned func
// stops it (leaving its kernel rules in place, as a SIGTERM would).
func startAgent(ctx context.Context, t *testing.T, node *testnet.NS, cpAddr, cachePath string, log hclog.Logger) (stop func(), inspectAddr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agentapp.Run(actx, agentapp.Config{
			NodeName:         nodeName,
			ControlPlanes:    []string{cpAddr},
			DialOptions:      []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
			CachePath:        cachePath,
			InspectListeners: []net.Listener{ln},
			NetNSPath:        node.Path(),
			Logger:           log.Named("nodeagent"),
		})
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("node agent: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop, ln.Addr().String()
}

// waitForBackends dials addr from ns until every name in want has answered
// and, over the last 30 answers, none in gone did. It returns the client
// address each backend saw.
func waitForBackends(t *testing.T, ns *testnet.NS, addr string, want, gone []string) map[string]string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := map[string]string{}
		var lastErr error
		for range 30 {
			line, err := ns.DialTCP(addr, time.Second)
			if err != nil {
				lastErr = err
				break
			}
			name, src, _ := strings.Cut(line, " ")
			seen[name] = src
		}
		ok := lastErr == nil
		for _, w := range want {
			if _, hit := seen[w]; !hit {
				ok = false
			}
		}
		for _, g := range gone {
			if _, hit := seen[g]; hit {
				ok = false
			}
		}
		if ok {
			return seen
		}
		if time.Now().After(deadline) {
			t.Fatalf("via %s: want backends %v and none of %v; saw %v (last error: %v)", addr, want, gone, seen, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func hasKey(entries []*doormanv1.Entry, key string) bool {
	for _, e := range entries {
		if e.GetKey() == key {
			return true
		}
	}
	return false
}

type grpcurlResult struct {
	t   *testing.T
	out string
}

func (r grpcurlResult) contains(subs ...string) grpcurlResult {
	r.t.Helper()
	for _, s := range subs {
		if !strings.Contains(r.out, s) {
			r.t.Errorf("grpcurl output lacks %q:\n%s", s, r.out)
		}
	}
	return r
}

// grpcurl runs the pinned grpcurl (tools/go.mod) with args.
func grpcurl(t *testing.T, args ...string) grpcurlResult {
	t.Helper()
	// go test runs a package's tests in its directory; the build's paths
	// may be trimmed, so the repository is found from there, not from the
	// source file's recorded name.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", append([]string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "grpcurl"}, args...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return grpcurlResult{t: t, out: string(out)}
}

// testLogger sends log lines to t.Log until the test ends, and drops the
// few that goroutines may still write afterwards.
func testLogger(t *testing.T) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: "wholepath", Level: hclog.Debug, Output: w})
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}
