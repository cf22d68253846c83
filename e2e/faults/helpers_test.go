//go:build e2e

package faults

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/retry"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// askTimeout bounds one request of a client loop.
const askTimeout = 2 * time.Second

func addr(ip string, port int32) string { return net.JoinHostPort(ip, strconv.Itoa(int(port))) }

func ask(ctx context.Context, dial echo.Dialer, target string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	return echo.Ask(ctx, dial, "tcp", target, "hostname")
}

// load is a bounded client loop: it connects to a Service every interval
// from one place and counts attempts and failures.
type load struct {
	name      string
	attempted atomic.Int64
	failed    atomic.Int64
	mu        sync.Mutex
	errs      []string
	cancel    context.CancelFunc
	done      chan struct{}
}

func startLoad(t *testing.T, name string, dial echo.Dialer, target string) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{name: name + " → " + target, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l.attempted.Add(1)
			if _, err := ask(context.Background(), dial, target); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				}
				l.mu.Unlock()
			}
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	<-l.done
}

// loads is every client loop of a test.
type loads []*load

// fromPod runs a loop from the echo Pod on node to target.
func fromPod(t *testing.T, node, target string) *load {
	t.Helper()
	dial, err := c.DialFromPod(ns, "web-"+node)
	if err != nil {
		t.Fatal(err)
	}
	return startLoad(t, "pod web-"+node, dial, target)
}

// fromExternal runs a loop from the external client to a node's NodePort
// of web.
func fromExternal(t *testing.T, node string) *load {
	t.Helper()
	return startLoad(t, "external", c.DialFromExternal(), addr(nodeIP(t, node), webNodePort))
}

// finish stops the loops, prints their counts and fails the test when
// more than maxFailed connections failed in all.
func (ls loads) finish(t *testing.T, maxFailed int64) {
	t.Helper()
	var att, fail int64
	for _, l := range ls {
		l.stop()
		a, f := l.attempted.Load(), l.failed.Load()
		att += a
		fail += f
		t.Logf("traffic %s: attempted=%d failed=%d", l.name, a, f)
		for _, e := range l.errs {
			t.Logf("  failure: %s", e)
		}
	}
	t.Logf("attempted=%d failed=%d", att, fail)
	if att == 0 {
		t.Errorf("no connection attempted")
	}
	if fail > maxFailed {
		t.Errorf("%d connections failed, want at most %d", fail, maxFailed)
	}
}

func nodeIP(t *testing.T, name string) string {
	t.Helper()
	for _, n := range c.Nodes() {
		if n.Name == name {
			return n.IP
		}
	}
	t.Fatalf("no node %s", name)
	return ""
}

// agentInspect calls the node agent's Inspect service on its unix socket.
func agentInspect(ctx context.Context, node string, call func(context.Context, doormanv1.AgentInspectServiceClient) error) error {
	conn, err := grpc.NewClient("unix://"+c.AgentInspectSocket(node),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := call(ctx, doormanv1.NewAgentInspectServiceClient(conn)); err != nil {
		return fmt.Errorf("inspect agent on %s: %w", node, err)
	}
	return nil
}

func agentState(ctx context.Context, node string, entries bool) (*doormanv1.GetStateResponse, error) {
	var st *doormanv1.GetStateResponse
	err := agentInspect(ctx, node, func(ctx context.Context, ic doormanv1.AgentInspectServiceClient) error {
		var err error
		st, err = ic.GetState(ctx, &doormanv1.GetStateRequest{Entries: entries})
		return err
	})
	return st, err
}

func mustAgentState(t *testing.T, node string) *doormanv1.GetStateResponse {
	t.Helper()
	st, err := agentState(context.Background(), node, false)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// cpInspect calls a control-plane replica's Inspect service (loopback).
func cpInspect(ctx context.Context, grpcAddr string, call func(context.Context, doormanv1.InspectServiceClient) error) error {
	conn, err := grpc.NewClient("passthrough:///"+grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := call(ctx, doormanv1.NewInspectServiceClient(conn)); err != nil {
		return fmt.Errorf("inspect control plane %s: %w", grpcAddr, err)
	}
	return nil
}

func cpNode(ctx context.Context, grpcAddr, node string) (*doormanv1.NodeStatus, error) {
	var out *doormanv1.NodeStatus
	err := cpInspect(ctx, grpcAddr, func(ctx context.Context, ic doormanv1.InspectServiceClient) error {
		r, err := ic.ListNodes(ctx, &doormanv1.ListNodesRequest{})
		if err != nil {
			return err
		}
		for _, n := range r.GetNodes() {
			if n.GetName() == node {
				out = n
				return nil
			}
		}
		return fmt.Errorf("node %s not listed", node)
	})
	return out, err
}

func cpView(ctx context.Context, grpcAddr, node string) (*doormanv1.GetNodeViewResponse, error) {
	var out *doormanv1.GetNodeViewResponse
	err := cpInspect(ctx, grpcAddr, func(ctx context.Context, ic doormanv1.InspectServiceClient) error {
		var err error
		out, err = ic.GetNodeView(ctx, &doormanv1.GetNodeViewRequest{NodeName: node})
		return err
	})
	return out, err
}

// converged: the node's agent is connected to the replica at grpcAddr,
// which has nothing in flight for it, and both hold the same view.
func converged(ctx context.Context, node, grpcAddr string) error {
	ns, err := cpNode(ctx, grpcAddr, node)
	if err != nil {
		return err
	}
	// A resume is acked at the current version, which may be newer than
	// the last one that changed this node's view (desired).
	if !ns.GetConnected() || ns.GetAckedVersion() == 0 || ns.GetAckedVersion() < ns.GetDesiredVersion() || ns.GetInFlightVersion() != 0 {
		return fmt.Errorf("%s: connected=%t desired=%d acked=%d in_flight=%d", node, ns.GetConnected(), ns.GetDesiredVersion(), ns.GetAckedVersion(), ns.GetInFlightVersion())
	}
	v, err := cpView(ctx, grpcAddr, node)
	if err != nil {
		return err
	}
	st, err := agentState(ctx, node, false)
	if err != nil {
		return err
	}
	if st.GetViewDigest() != v.GetViewDigest() {
		return fmt.Errorf("%s: agent view digest %x, control plane %x", node, st.GetViewDigest(), v.GetViewDigest())
	}
	return nil
}

func waitConverged(t *testing.T, node, grpcAddr string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	retry.Eventually(t, timeout, "agent on "+node+" converged with "+grpcAddr, func() error {
		return converged(context.Background(), node, grpcAddr)
	})
	return time.Since(start)
}

// entryDigest returns the digest of the first entry whose key starts with
// prefix, from a control plane's view of the node or from the agent.
func cpEntryDigest(ctx context.Context, grpcAddr, node, prefix string) (uint64, error) {
	v, err := cpView(ctx, grpcAddr, node)
	if err != nil {
		return 0, err
	}
	for _, e := range v.GetEntries() {
		if strings.HasPrefix(e.GetKey(), prefix) {
			return e.GetDigest(), nil
		}
	}
	return 0, fmt.Errorf("no key %s* in the view of %s", prefix, node)
}

func agentEntryDigest(ctx context.Context, node, prefix string) (uint64, error) {
	st, err := agentState(ctx, node, true)
	if err != nil {
		return 0, err
	}
	for _, e := range st.GetEntries() {
		if strings.HasPrefix(e.GetKey(), prefix) {
			return e.GetDigest(), nil
		}
	}
	return 0, fmt.Errorf("agent on %s holds no key %s*", node, prefix)
}

// viewBytes is the encoded size of the node's whole view at a control
// plane: what a full re-send would at least cost.
func viewBytes(t *testing.T, grpcAddr, node string) int {
	t.Helper()
	v, err := cpView(context.Background(), grpcAddr, node)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range v.GetEntries() {
		n += proto.Size(e)
	}
	return n
}

// changeBulk changes bulk Service i's endpoints and waits until the
// control plane at grpcAddr holds the new value for node; it returns the
// new digest.
var bulkGen sync.Map // i → gen

func changeBulk(t *testing.T, i int, grpcAddr, node string) uint64 {
	t.Helper()
	ctx := context.Background()
	prefix := ns + "/" + bulkName(i) + ":"
	var before uint64
	if grpcAddr != "" {
		var err error
		if before, err = cpEntryDigest(ctx, grpcAddr, node, prefix); err != nil {
			t.Fatal(err)
		}
	}
	g, _ := bulkGen.LoadOrStore(i, 0)
	gen := g.(int) + 1
	bulkGen.Store(i, gen)
	if err := setBulkEndpoints(ctx, i, gen); err != nil {
		t.Fatalf("change %s: %v", bulkName(i), err)
	}
	if grpcAddr == "" {
		return 0
	}
	return waitCPDigestChange(t, grpcAddr, node, prefix, before, 30*time.Second, "control plane sees the change of "+bulkName(i))
}

// waitCPDigestChange polls until the control plane's entry for prefix on
// node has another digest than before, and returns it.
func waitCPDigestChange(t *testing.T, grpcAddr, node, prefix string, before uint64, timeout time.Duration, what string) uint64 {
	t.Helper()
	var after uint64
	retry.Eventually(t, timeout, what, func() error {
		d, err := cpEntryDigest(context.Background(), grpcAddr, node, prefix)
		if err != nil {
			return err
		}
		if d == before {
			return errors.New("unchanged")
		}
		after = d
		return nil
	})
	return after
}

// waitAgentEntry polls until the node's agent holds digest for the key.
func waitAgentEntry(t *testing.T, node, prefix string, digest uint64, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	retry.Eventually(t, timeout, "agent on "+node+" holding the new "+prefix, func() error {
		d, err := agentEntryDigest(context.Background(), node, prefix)
		if err != nil {
			return err
		}
		if d != digest {
			return fmt.Errorf("digest %x, want %x", d, digest)
		}
		return nil
	})
	return time.Since(start)
}

// sentUpdate is one "sending update" debug line of a control plane.
type sentUpdate struct {
	node            string
	version         uint64
	full            bool
	replacedBuckets int
	upserts         int
	removals        int
}

var sendingRE = regexp.MustCompile(`sending update: node=(\S+) version=(\d+) full=(\w+) replaced_buckets=(\d+) upserts=(\d+) removals=(\d+)`)

func sentUpdates(text, node string) []sentUpdate {
	var out []sentUpdate
	for _, m := range sendingRE.FindAllStringSubmatch(text, -1) {
		if node != "" && m[1] != node {
			continue
		}
		v, _ := strconv.ParseUint(m[2], 10, 64)
		rb, _ := strconv.Atoi(m[4])
		up, _ := strconv.Atoi(m[5])
		rm, _ := strconv.Atoi(m[6])
		out = append(out, sentUpdate{node: m[1], version: v, full: m[3] == "true", replacedBuckets: rb, upserts: up, removals: rm})
	}
	return out
}

func metric(t *testing.T, node, name string) float64 {
	t.Helper()
	var v float64
	retry.Eventually(t, 10*time.Second, "metric "+name+" of "+node, func() error {
		m, err := c.AgentMetrics(context.Background(), node)
		if err != nil {
			return err
		}
		var ok bool
		if v, ok = m[name]; !ok {
			return fmt.Errorf("no metric %s", name)
		}
		return nil
	})
	return v
}

func gen(t *testing.T, node string) uint32 {
	t.Helper()
	g, err := c.NFTGeneration(node)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func snapshot(t *testing.T, node string) *cluster.TableSnapshot {
	t.Helper()
	s, err := c.ReadDoormanTable(node)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Exists {
		t.Fatalf("no doorman table on %s", node)
	}
	return s
}

// objectDiff is the part of a snapshot diff that is not elements: chains,
// rules (by handle), sets.
func objectDiff(d []string) []string {
	var out []string
	for _, l := range d {
		if !strings.Contains(l, "element of ") {
			out = append(out, l)
		}
	}
	return out
}

// agentsAlive fails the test when an agent or the control plane died.
func agentsAlive(t *testing.T) {
	t.Helper()
	for _, n := range c.Nodes() {
		if ok, err := c.AgentRunning(n.Name); !ok {
			t.Errorf("agent on %s not running: %v", n.Name, err)
		}
	}
	if !c.ControlPlaneRunning() {
		t.Errorf("control plane not running")
	}
}

// noPanics fails the test when a log says a Go program panicked.
func noPanics(t *testing.T, marks ...cluster.LogMark) {
	t.Helper()
	for _, m := range marks {
		if s := m.Since(); strings.Contains(s, "panic:") || strings.Contains(s, "goroutine ") && strings.Contains(s, "[running]") {
			i := strings.Index(s, "panic:")
			t.Errorf("%s: panic: %s", m.Path(), s[max(0, i):min(len(s), max(0, i)+1500)])
		}
	}
}

// session is one long-lived TCP connection through a Service.
type session struct{ s *echo.Session }

func openSession(ctx context.Context, dial echo.Dialer, target string) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	s, err := echo.OpenSession(ctx, dial, target)
	if err != nil {
		return nil, fmt.Errorf("open session to %s: %w", target, err)
	}
	return &session{s: s}, nil
}

func (s *session) ask(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	return s.s.Ask(ctx, "hostname")
}

func (s *session) Close() error { return s.s.Close() }
