package stream

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// controlPlane is the peer: it records each stream's Hello and replies, and
// sends the updates the test queues. drop ends the current stream.
type controlPlane struct {
	doormanv1.UnimplementedAgentServiceServer
	hellos  chan *doormanv1.Hello
	replies chan *doormanv1.SyncRequest
	updates chan *doormanv1.SyncResponse
	drop    chan struct{}
}

func newControlPlane() *controlPlane {
	return &controlPlane{
		hellos:  make(chan *doormanv1.Hello, 10),
		replies: make(chan *doormanv1.SyncRequest, 10),
		updates: make(chan *doormanv1.SyncResponse, 10),
		drop:    make(chan struct{}, 1),
	}
}

func (cp *controlPlane) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	if first.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "first message is not a hello")
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
		case <-cp.drop:
			return status.Error(codes.Unavailable, "dropped by the test")
		case <-stream.Context().Done():
			return nil
		}
	}
}

// network holds in-memory listeners by name; a name without one refuses.
type network struct {
	mu        sync.Mutex
	listeners map[string]*bufconn.Listener
}

func (n *network) serve(t *testing.T, name string, cp *controlPlane) {
	lis := n.listen(t, name)
	srv := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(srv, cp)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
}

// listen adds an in-memory listener under name.
func (n *network) listen(t *testing.T, name string) *bufconn.Listener {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.listeners == nil {
		n.listeners = map[string]*bufconn.Listener{}
	}
	n.listeners[name] = lis
	return lis
}

func (n *network) dialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			n.mu.Lock()
			lis := n.listeners[addr]
			n.mu.Unlock()
			if lis == nil {
				return nil, fmt.Errorf("connection refused: %s", addr)
			}
			return lis.DialContext(ctx)
		}),
	}
}

// memKernel holds the view it was given.
type memKernel struct {
	mu   sync.Mutex
	held map[string]*doormanv1.Entry
}

func (k *memKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.held = maps.Clone(view)
	return dataplane.Stats{Ops: len(view)}, nil
}

func (k *memKernel) RetireUnused() (int, error) { return 0, nil }

func (k *memKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range changes {
		if c.New == nil {
			delete(k.held, c.Key)
		} else {
			k.held[c.Key] = c.New
		}
	}
	return dataplane.Stats{Ops: len(changes)}, nil
}

func (k *memKernel) snapshot() map[string]*doormanv1.Entry {
	k.mu.Lock()
	defer k.mu.Unlock()
	return maps.Clone(k.held)
}

func servicePort(t testing.TB, name string, endpoints ...string) *doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: name, PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80,
	}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 8080})
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func digestOf(entries ...*doormanv1.Entry) uint64 {
	var d doormanv1.Digests
	for _, e := range entries {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return d.View()
}

func holdingOf(version uint64, entries ...*doormanv1.Entry) *doormanv1.Holding {
	var d doormanv1.Digests
	for _, e := range entries {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return &doormanv1.Holding{Version: version, ViewDigest: d.View(), BucketDigests: d.BucketList()}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

// start runs the stream loop against targets until the test ends.
func start(t *testing.T, n *network, a *agent.Agent, targets ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Targets: Static(targets...), DialOptions: n.dialOptions(), Agent: a, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := receive(t, done, "return from Run"); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestHelloCarriesHolding(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	for _, tc := range []struct {
		name string
		view func() *state.View
		want *doormanv1.Hello
	}{
		{"holding nothing", state.New, &doormanv1.Hello{NodeName: "node-1", Holding: &doormanv1.Holding{}, Protocol: version.Protocol, AgentVersion: version.Get().String()}},
		{"holding a cached view", func() *state.View {
			v, err := state.Restore(7, []*doormanv1.Entry{web, db})
			if err != nil {
				t.Fatal(err)
			}
			return v
		}, &doormanv1.Hello{NodeName: "node-1", Holding: holdingOf(7, web, db), Protocol: version.Protocol, AgentVersion: version.Get().String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &network{}
			cp := newControlPlane()
			n.serve(t, "cp-a", cp)
			a := agent.New("node-1", tc.view(), &memKernel{}, nil)
			start(t, n, a, "passthrough:///cp-a")
			hello := receive(t, cp.hellos, "hello")
			if diff := cmp.Diff(tc.want, hello, protocmp.Transform()); diff != "" {
				t.Errorf("hello (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpdates(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	db := servicePort(t, "db", "10.244.2.1")
	ack := func(v uint64, es ...*doormanv1.Entry) *doormanv1.SyncRequest {
		return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: v, ViewDigest: digestOf(es...)}}}
	}
	refused := func(v uint64, keys []string, es ...*doormanv1.Entry) *doormanv1.SyncRequest {
		r := ack(v, es...)
		r.GetAck().NotProgrammed = keys
		return r
	}
	nack := func(v uint64, msg string) *doormanv1.SyncRequest {
		return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: v, Error: msg}}}
	}
	badKey := servicePort(t, "web", "10.244.1.3")
	badKey.Key = "default/other:http/tcp/ipv4"
	// One stream across the steps: each depends on the ones before.
	n := &network{}
	cp := newControlPlane()
	n.serve(t, "cp-a", cp)
	k := &memKernel{}
	a := agent.New("node-1", state.New(), k, nil)
	start(t, n, a, "passthrough:///cp-a")
	receive(t, cp.hellos, "hello")
	for _, tc := range []struct {
		name       string
		update     *doormanv1.SyncResponse
		want       *doormanv1.SyncRequest
		wantKernel []*doormanv1.Entry
	}{
		{"full update", &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web, db}, ViewDigest: digestOf(web, db)},
			ack(1, web, db), []*doormanv1.Entry{web, db}},
		{"change", &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{web2}, Removals: []string{db.Key}, ViewDigest: digestOf(web2)},
			ack(2, web2), []*doormanv1.Entry{web2}},
		// An entry that is wrong on its own is refused alone: acked, listed
		// as not programmed, the kernel untouched.
		{"bad entry is refused alone", &doormanv1.SyncResponse{Version: 3, Upserts: []*doormanv1.Entry{badKey}, ViewDigest: digestOf(web2, badKey)},
			refused(3, []string{badKey.Key}, web2, badKey), []*doormanv1.Entry{web2}},
		// A message that is broken as a whole is nacked and changes nothing.
		{"broken update is nacked and changes nothing", &doormanv1.SyncResponse{Version: 4, Upserts: []*doormanv1.Entry{db}, Removals: []string{db.Key}, ViewDigest: digestOf(web2, badKey)},
			nack(4, `update 4: entry "default/db:http/tcp/ipv4" both upserted and removed`),
			[]*doormanv1.Entry{web2}},
		{"next good update", &doormanv1.SyncResponse{Version: 5, Upserts: []*doormanv1.Entry{db}, Removals: []string{badKey.Key}, ViewDigest: digestOf(web2, db)},
			ack(5, web2, db), []*doormanv1.Entry{web2, db}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Status(true)
			cp.updates <- tc.update
			got := receive(t, cp.replies, "reply")
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			want := map[string]*doormanv1.Entry{}
			for _, e := range tc.wantKernel {
				want[e.Key] = e
			}
			if diff := cmp.Diff(want, k.snapshot(), protocmp.Transform()); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
			if got.GetNack() != nil {
				after := a.Status(true)
				if diff := cmp.Diff(before, after, protocmp.Transform(), protocmp.IgnoreFields(&doormanv1.GetStateResponse{}, "last_error", "nacks", "last_nack_version")); diff != "" {
					t.Errorf("state changed by a nacked update (-want +got):\n%s", diff)
				}
				if !strings.Contains(after.GetLastError(), "both upserted and removed") {
					t.Errorf("last error %q does not report the nack", after.GetLastError())
				}
			}
		})
	}
}

// TestLargeFullView: a full view far over gRPC's default 4 MiB message
// limit (100,000 Service ports make about 13 MB) is received and applied.
func TestLargeFullView(t *testing.T) {
	n := &network{}
	cp := newControlPlane()
	n.serve(t, "cp-a", cp)
	k := &memKernel{}
	a := agent.New("node-1", state.New(), k, nil)
	start(t, n, a, "passthrough:///cp-a")
	receive(t, cp.hellos, "hello")
	var entries []*doormanv1.Entry
	size := 0
	for i := 0; size < 6<<20; i++ {
		e := servicePort(t, fmt.Sprintf("svc-%06d", i), "10.244.1.1", "10.244.1.2")
		entries = append(entries, e)
		size += proto.Size(e)
	}
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: entries, ViewDigest: digestOf(entries...)}
	got := receive(t, cp.replies, "reply")
	if got.GetAck().GetVersion() != 1 {
		t.Fatalf("reply to a %d-byte full view of %d entries: %v, want an ack of version 1", size, len(entries), got)
	}
	if held := len(k.snapshot()); held != len(entries) {
		t.Errorf("kernel holds %d entries, want %d", held, len(entries))
	}
}

func TestReconnectReportsHolding(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	n := &network{}
	cp := newControlPlane()
	n.serve(t, "cp-a", cp)
	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	start(t, n, a, "passthrough:///cp-a")

	if h := receive(t, cp.hellos, "first hello"); h.GetHolding().GetVersion() != 0 {
		t.Fatalf("first hello holds version %d, want 0", h.GetHolding().GetVersion())
	}
	cp.updates <- &doormanv1.SyncResponse{Version: 5, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 5 {
		t.Fatalf("reply %v, want an ack of version 5", r)
	}
	cp.drop <- struct{}{}
	h := receive(t, cp.hellos, "hello after the stream dropped")
	if diff := cmp.Diff(&doormanv1.Hello{NodeName: "node-1", Holding: holdingOf(5, web), Protocol: version.Protocol, AgentVersion: version.Get().String()}, h, protocmp.Transform()); diff != "" {
		t.Errorf("hello after reconnect (-want +got):\n%s", diff)
	}
	// Nothing differs: the control plane sends the version only, and the
	// agent acks it without a change.
	cp.updates <- &doormanv1.SyncResponse{Version: 6, ViewDigest: digestOf(web)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 6 || r.GetAck().GetViewDigest() != digestOf(web) {
		t.Fatalf("reply %v, want an ack of version 6", r)
	}
}

func TestFailover(t *testing.T) {
	n := &network{}
	cpB := newControlPlane()
	n.serve(t, "cp-b", cpB)
	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	start(t, n, a, "passthrough:///cp-down", "passthrough:///cp-b")
	receive(t, cpB.hellos, "hello on the second control plane")
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := a.Status(false)
		if s.GetConnected() && s.GetControlPlane() == "passthrough:///cp-b" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %v: not connected to cp-b", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(a.Status(false).GetLastError(), "cp-down") {
		t.Errorf("last error %q does not name the control plane that failed", a.Status(false).GetLastError())
	}
}

func TestResumeAfterViewDigestMismatch(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	db := servicePort(t, "db", "10.244.2.1")
	n := &network{}
	cp := newControlPlane()
	n.serve(t, "cp-a", cp)
	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	start(t, n, a, "passthrough:///cp-a")
	receive(t, cp.hellos, "hello")
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}
	receive(t, cp.replies, "ack")
	cp.updates <- &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{db}, ViewDigest: 12345}
	if r := receive(t, cp.replies, "nack"); r.GetNack().GetVersion() != 2 || !strings.Contains(r.GetNack().GetError(), "view digest mismatch") {
		t.Fatalf("reply %v, want a nack of version 2 for the digest", r)
	}
	h := receive(t, cp.hellos, "hello of the resumed stream")
	if diff := cmp.Diff(holdingOf(1, web), h.GetHolding(), protocmp.Transform()); diff != "" {
		t.Errorf("resumed holding (-want +got):\n%s", diff)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for _, tc := range []struct {
		failures int
		jitter   float64
		want     time.Duration
	}{
		{0, 0, 50 * time.Millisecond},
		{0, 0.999999, 100 * time.Millisecond},
		{1, 0, 100 * time.Millisecond},
		{3, 0.5, 600 * time.Millisecond},
		{6, 0, 2500 * time.Millisecond}, // 6.4 s capped at 5 s
		{1000, 0.999999, 5 * time.Second},
	} {
		t.Run(fmt.Sprintf("%d/%v", tc.failures, tc.jitter), func(t *testing.T) {
			got := Backoff(tc.failures, lo, hi, tc.jitter)
			if got.Round(time.Millisecond) != tc.want {
				t.Errorf("Backoff(%d, %v) = %v, want %v", tc.failures, tc.jitter, got, tc.want)
			}
		})
	}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name    string
		targets []string
		last    string
		want    string
	}{
		{"first attempt", []string{"a", "b"}, "", "a"},
		{"after a", []string{"a", "b"}, "a", "b"},
		{"wraps", []string{"a", "b"}, "b", "a"},
		{"last gone from the list", []string{"a", "c"}, "b", "a"},
		{"one target", []string{"a"}, "a", "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Next(tc.targets, tc.last); got != tc.want {
				t.Errorf("Next(%v, %q) = %q, want %q", tc.targets, tc.last, got, tc.want)
			}
		})
	}
}

// targetList is a Targets function whose list the test changes.
type targetList struct {
	mu   sync.Mutex
	list []string
}

func (l *targetList) set(list ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = list
}

func (l *targetList) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.list...)
}

// TestTargetsChange: with no address known the loop waits; it connects
// once one appears, and after losing that control plane it moves to the
// address the list holds by then.
func TestTargetsChange(t *testing.T) {
	n := &network{}
	cpA, cpB := newControlPlane(), newControlPlane()
	n.serve(t, "cp-a", cpA)
	n.serve(t, "cp-b", cpB)
	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	targets := &targetList{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Targets: targets.get, DialOptions: n.dialOptions(), Agent: a, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		if err := receive(t, done, "return from Run"); err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	time.Sleep(50 * time.Millisecond)
	if s := a.Status(false); s.GetConnected() || !strings.Contains(s.GetLastError(), "no control plane address") {
		t.Errorf("status with no address: connected %v, last error %q", s.GetConnected(), s.GetLastError())
	}
	targets.set("passthrough:///cp-a")
	receive(t, cpA.hellos, "hello on cp-a")
	targets.set("passthrough:///cp-b")
	cpA.drop <- struct{}{}
	receive(t, cpB.hellos, "hello on cp-b, the list's new address")
	select {
	case h := <-cpA.hellos:
		t.Errorf("hello %v on cp-a after it left the list", h)
	default:
	}
}
