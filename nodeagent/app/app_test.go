package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/testlog"
	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// controlPlane serves one stream at a time on loopback: it reports each
// Hello and each reply, and sends what the test queues.
type controlPlane struct {
	doormanv1.UnimplementedAgentServiceServer
	hellos  chan *doormanv1.Hello
	replies chan *doormanv1.SyncRequest
	updates chan *doormanv1.SyncResponse
}

func (cp *controlPlane) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	cp.hellos <- first.GetHello()
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			cp.replies <- m
		}
	}()
	for {
		select {
		case u := <-cp.updates:
			if err := stream.Send(u); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func serveControlPlane(t *testing.T, lis net.Listener) *controlPlane {
	cp := &controlPlane{hellos: make(chan *doormanv1.Hello, 4), replies: make(chan *doormanv1.SyncRequest, 4), updates: make(chan *doormanv1.SyncResponse, 4)}
	g := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(g, cp)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return cp
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s within 20s", what)
		panic("unreachable")
	}
}

func entries(t *testing.T) []*doormanv1.Entry {
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: "web", PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80, NodePort: 30080,
		Endpoints: []*doormanv1.Endpoint{{Ip: "10.244.1.2", Port: 8080}, {Ip: "10.244.2.2", Port: 8080}},
	}
	node := &doormanv1.Node{Name: "node-1", NodeportAddresses: []string{"192.168.50.1"}}
	spd, _ := doormanv1.ValueDigest(sp)
	nd, _ := doormanv1.ValueDigest(node)
	return []*doormanv1.Entry{
		{Key: doormanv1.ServicePortKey(sp), Digest: spd, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}},
		{Key: doormanv1.NodeKey, Digest: nd, Value: &doormanv1.Entry_Node{Node: node}},
	}
}

func digestOf(es []*doormanv1.Entry) uint64 {
	var d doormanv1.Digests
	for _, e := range es {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return d.View()
}

// agentRun is one run of the agent, stopped with stop.
type agentRun struct {
	health  string
	metrics string // URL of /metrics
	inspect string // address of the Inspect service
	logs    *testlog.Buffer
	cancel  context.CancelFunc
	done    chan error
}

func startAgent(t *testing.T, ns *testnet.NS, cachePath string, controlPlanes ...string) *agentRun {
	t.Helper()
	return startAgentWith(t, ns, cachePath, func(c *Config) { c.ControlPlanes = controlPlanes })
}

// startAgentWith starts the agent with the test's listeners and logger,
// after mod changed the Config.
func startAgentWith(t *testing.T, ns *testnet.NS, cachePath string, mod func(*Config)) *agentRun {
	t.Helper()
	health, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inspectLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{
		health:  "http://" + health.Addr().String() + "/healthz",
		metrics: "http://" + metricsLis.Addr().String() + "/metrics",
		inspect: inspectLis.Addr().String(),
		logs:    logs, cancel: cancel, done: make(chan error, 1),
	}
	cfg := Config{
		NodeName:         "node-1",
		DialOptions:      []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		CachePath:        cachePath,
		HealthListener:   health,
		MetricsListener:  metricsLis,
		InspectListeners: []net.Listener{inspectLis},
		NetNSPath:        ns.Path(),
		Logger:           hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
	}
	mod(&cfg)
	go func() {
		r.done <- Run(ctx, cfg)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *agentRun) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	if err := receive(t, r.done, "return from Run"); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// waitHealth polls /healthz until it answers want.
func (r *agentRun) waitHealth(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		resp, err := http.Get(r.health)
		if err == nil {
			got = resp.StatusCode
			_ = resp.Body.Close()
			if got == want {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("/healthz answers %d, want %d\nlogs:\n%s", got, want, r.logs.String())
}

func kernelTable(t *testing.T, ns *testnet.NS) *doormanv1.GetKernelResponse {
	t.Helper()
	dp, err := dataplane.Open(nil, dataplane.Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dp.Close() }()
	k, err := dp.Inspect(true)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRestartServesFromCache: the agent programs a full update, stops
// (leaving the rules), and starts again while no control plane answers: it
// programs the cached view without touching the right kernel, reports
// healthy, and resumes with what it holds once a control plane is back.
func TestRestartServesFromCache(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	cachePath := filepath.Join(t.TempDir(), "doorman", "cache.db")
	view := entries(t)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	first := startAgent(t, ns, cachePath, lis.Addr().String())
	first.waitHealth(t, http.StatusServiceUnavailable)
	if h := receive(t, cp.hellos, "hello"); h.GetHolding().GetVersion() != 0 {
		t.Fatalf("first hello holds %v, want nothing", h.GetHolding())
	}
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1\nlogs:\n%s", r, first.logs.String())
	}
	first.waitHealth(t, http.StatusOK)
	programmed := kernelTable(t, ns)
	if len(programmed.GetMaps()) == 0 {
		t.Fatalf("kernel holds no maps after the update: %v", programmed)
	}
	first.stop(t)
	if diff := cmp.Diff(programmed, kernelTable(t, ns), protocmp.Transform()); diff != "" {
		t.Fatalf("stopping the agent changed the kernel (-before +after):\n%s", diff)
	}

	// Restart with the control plane down: a closed port.
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close()
	second := startAgent(t, ns, cachePath, downAddr)
	second.waitHealth(t, http.StatusOK)
	// Nobody committed since the first agent's last commit: the cache's
	// mark spares reading the table back.
	if line := logLine(second.logs.String(), "cached view programmed"); !strings.Contains(line, " ops=0 ") || !strings.Contains(line, " read=generation_unchanged ") {
		t.Errorf("restart did not program the cached view with 0 ops and no read; logs:\n%s", second.logs.String())
	}
	if diff := cmp.Diff(programmed, kernelTable(t, ns), protocmp.Transform()); diff != "" {
		t.Errorf("restart changed the kernel (-before +after):\n%s", diff)
	}
	second.stop(t)

	// A commit to another table moves the generation on: the next start
	// reads the table back.
	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	other.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyIPv4})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}

	// Start again with a control plane: the hello reports what is held.
	third := startAgent(t, ns, cachePath, lis.Addr().String())
	h := receive(t, cp.hellos, "hello on resume")
	var d doormanv1.Digests
	for _, e := range view {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	if diff := cmp.Diff(&doormanv1.Hello{NodeName: "node-1", Holding: &doormanv1.Holding{Version: 1, ViewDigest: d.View(), BucketDigests: d.BucketList()},
		Protocol: version.Protocol, AgentVersion: version.Get().String()}, h, protocmp.Transform()); diff != "" {
		t.Errorf("resumed hello (-want +got):\n%s", diff)
	}
	cp.updates <- &doormanv1.SyncResponse{Version: 2, ViewDigest: d.View()}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 2 {
		t.Fatalf("reply %v, want an ack of version 2\nlogs:\n%s", r, third.logs.String())
	}
	if line := logLine(third.logs.String(), "cached view programmed"); !strings.Contains(line, " ops=0 ") || !strings.Contains(line, " read=generation_changed ") {
		t.Errorf("start after an outside commit did not read the table back; logs:\n%s", third.logs.String())
	}

	// A commit to another table while the agent runs is seen by its drift
	// monitor; the mark the agent leaves at its stop covers it, and the
	// next start reads nothing.
	other.AddTable(&nftables.Table{Name: "cni", Family: nftables.TableFamilyIPv4})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	third.stop(t)
	fourth := startAgent(t, ns, cachePath, downAddr)
	fourth.waitHealth(t, http.StatusOK)
	if line := logLine(fourth.logs.String(), "cached view programmed"); !strings.Contains(line, " ops=0 ") || !strings.Contains(line, " read=generation_unchanged ") {
		t.Errorf("start after a commit to another table that the last agent saw read the table back; logs:\n%s", fourth.logs.String())
	}
}

// TestMarkSavedWhileRunning: an agent that is killed leaves the mark it
// last wrote; it writes the kernel's mark moved on past commits to other
// tables every period, not only when it stops.
func TestMarkSavedWhileRunning(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	cachePath := filepath.Join(t.TempDir(), "cache.db")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	run := startAgentWith(t, ns, cachePath, func(c *Config) {
		c.ControlPlanes = []string{lis.Addr().String()}
		c.cachePeriod = 50 * time.Millisecond
	})
	receive(t, cp.hellos, "hello")
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1\nlogs:\n%s", r, run.logs.String())
	}
	saves := func() int {
		n := 0
		for _, l := range strings.Split(run.logs.String(), "\n") {
			if strings.Contains(l, "kernel mark saved:") && strings.Contains(l, " when=periodic ") {
				n++
			}
		}
		return n
	}
	waitSaves := func(n int, what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for saves() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d periodic writes of the mark within 5s, want %d\nlogs:\n%s", what, saves(), n, run.logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitSaves(1, "after the first update") // the mark, first written with the view
	time.Sleep(200 * time.Millisecond)     // 4 periods: nothing moved, nothing written
	if n := saves(); n != 1 {
		t.Errorf("%d periodic writes of a mark that did not move, want 1", n)
	}
	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	other.AddTable(&nftables.Table{Name: "cni", Family: nftables.TableFamilyIPv4})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	waitSaves(2, "after a commit to another table")
}

// logLine returns the first log line containing msg.
func logLine(logs, msg string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, msg) {
			return l
		}
	}
	return ""
}

// TestCorruptCacheIsSetAside: a garbage cache file is moved aside with a
// clear log line and the agent starts empty, asking for a full view.
func TestCorruptCacheIsSetAside(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	cachePath := filepath.Join(t.TempDir(), "cache.db")
	if err := os.WriteFile(cachePath, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	run := startAgent(t, ns, cachePath, lis.Addr().String())
	if h := receive(t, cp.hellos, "hello"); h.GetHolding().GetVersion() != 0 {
		t.Fatalf("hello holds %v, want nothing", h.GetHolding())
	}
	logs := run.logs.String()
	if !strings.Contains(logs, "cache unreadable, set aside") || !strings.Contains(logs, fmt.Sprintf("aside=%s.corrupt-1", cachePath)) {
		t.Errorf("no set-aside log line; logs:\n%s", logs)
	}
	if _, err := os.Stat(cachePath + ".corrupt-1"); err != nil {
		t.Errorf("set-aside file: %v", err)
	}
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack\nlogs:\n%s", r, run.logs.String())
	}
}
