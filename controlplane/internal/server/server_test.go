package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func ptr[T any](v T) *T { return &v }

func service(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
		},
	}
}

func endpoints(svc string, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return s
}

func key(svc string) string { return "ns/" + svc + ":http/tcp/ipv4" }

type env struct {
	t   *testing.T
	hub *hub.Hub
	cc  *grpc.ClientConn
}

func newEnv(t *testing.T, services int) *env {
	h := testHub(services, "n1", "n2")
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(Codec())
	Register(gs, h, nil)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc := dialBufconn(t, lis)
	t.Cleanup(h.Close)
	return &env{t: t, hub: h, cc: cc}
}

// testHub is a ready hub with services Services s0, s1, … (one endpoint
// each) and the named nodes.
func testHub(services int, nodes ...string) *hub.Hub {
	h := hub.New(hub.Config{VersionSeed: 1000})
	for i := range services {
		name := fmt.Sprintf("s%d", i)
		h.SetService(service(name))
		h.SetSlice(endpoints(name, fmt.Sprintf("10.1.0.%d", i+1)))
	}
	for _, n := range nodes {
		h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	h.MarkReady()
	return h
}

// dialBufconn returns a client connection over the in-memory listener,
// closed when the test ends.
func dialBufconn(t *testing.T, lis *bufconn.Listener) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// client is a test agent on one stream.
type client struct {
	t       *testing.T
	stream  grpc.BidiStreamingClient[doormanv1.SyncRequest, doormanv1.SyncResponse]
	entries map[string]*doormanv1.Entry
	got     chan *doormanv1.SyncResponse
}

func (e *env) connect(node string, entries map[string]*doormanv1.Entry) *client {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := doormanv1.NewAgentServiceClient(e.cc).Sync(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	c := &client{t: e.t, stream: stream, entries: map[string]*doormanv1.Entry{}, got: make(chan *doormanv1.SyncResponse, 16)}
	for k, v := range entries {
		c.entries[k] = v
	}
	hello := &doormanv1.Hello{NodeName: node}
	if len(c.entries) > 0 {
		d := c.digests()
		hello.Holding = &doormanv1.Holding{Version: 1, ViewDigest: d.View(), BucketDigests: d.BucketList()}
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: hello}}); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(c.got)
				return
			}
			c.got <- r
		}
	}()
	return c
}

func (c *client) digests() *doormanv1.Digests {
	d := &doormanv1.Digests{}
	for k, e := range c.entries {
		d.Toggle(k, e.GetDigest())
	}
	return d
}

func (c *client) recv() *doormanv1.SyncResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.got:
		if !ok {
			c.t.Fatal("stream ended")
		}
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatal("no update within 10s")
	}
	return nil
}

func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.got:
		c.t.Fatalf("unexpected update: version %d, %d upserts", r.GetVersion(), len(r.GetUpserts()))
	case <-time.After(d):
	}
}

func (c *client) apply(r *doormanv1.SyncResponse) {
	if r.GetFull() {
		clear(c.entries)
	}
	for _, b := range r.GetReplacedBuckets() {
		for k := range c.entries {
			if doormanv1.Bucket(k) == b {
				delete(c.entries, k)
			}
		}
	}
	for _, e := range r.GetUpserts() {
		c.entries[e.GetKey()] = e
	}
	for _, k := range r.GetRemovals() {
		delete(c.entries, k)
	}
	if got := c.digests().View(); got != r.GetViewDigest() {
		c.t.Errorf("view digest after applying %x, update says %x", got, r.GetViewDigest())
	}
}

func (c *client) ack(r *doormanv1.SyncResponse) {
	c.t.Helper()
	c.apply(r)
	if err := c.stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: r.GetVersion(), ViewDigest: c.digests().View()}}}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) nack(r *doormanv1.SyncResponse, msg string) {
	c.t.Helper()
	if err := c.stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: r.GetVersion(), Error: msg}}}); err != nil {
		c.t.Fatal(err)
	}
}

func upsertKeys(r *doormanv1.SyncResponse) []string {
	var out []string
	for _, e := range r.GetUpserts() {
		out = append(out, e.GetKey())
	}
	slices.Sort(out)
	return out
}

func TestSyncResume(t *testing.T) {
	e := newEnv(t, 20)
	first := e.connect("n1", nil)
	full := first.recv()
	if !full.GetFull() || len(full.GetUpserts()) != 21 {
		t.Fatalf("hello with nothing: full=%v upserts=%d, want full view of 21", full.GetFull(), len(full.GetUpserts()))
	}
	first.ack(full)
	held := first.entries

	t.Run("matching digests: empty update", func(t *testing.T) {
		c := e.connect("n1", held)
		r := c.recv()
		if r.GetFull() || len(r.GetUpserts())+len(r.GetRemovals())+len(r.GetReplacedBuckets()) != 0 || r.GetVersion() == 0 {
			t.Errorf("update %v, want only a version", r)
		}
		c.ack(r)
	})
	t.Run("one bucket wrong: only that bucket", func(t *testing.T) {
		wrong := map[string]*doormanv1.Entry{}
		for k, v := range held {
			wrong[k] = v
		}
		delete(wrong, key("s4"))
		c := e.connect("n1", wrong)
		r := c.recv()
		if diff := cmp.Diff([]uint32{doormanv1.Bucket(key("s4"))}, r.GetReplacedBuckets()); diff != "" {
			t.Errorf("replaced buckets (-want +got):\n%s", diff)
		}
		if !slices.Contains(upsertKeys(r), key("s4")) || len(r.GetUpserts()) > 3 {
			t.Errorf("upserts %v", upsertKeys(r))
		}
		c.ack(r)
		if diff := cmp.Diff(mapKeys(held), mapKeys(c.entries)); diff != "" {
			t.Errorf("healed view (-want +got):\n%s", diff)
		}
	})
}

func mapKeys(m map[string]*doormanv1.Entry) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s %x", k, v.GetDigest()))
	}
	slices.Sort(out)
	return out
}

func TestSyncAckNackInFlight(t *testing.T) {
	e := newEnv(t, 3)
	c := e.connect("n1", nil)
	full := c.recv()
	// In flight: changes wait and coalesce.
	e.hub.SetSlice(endpoints("s0", "10.2.0.1"))
	e.hub.SetSlice(endpoints("s1", "10.2.0.2"))
	e.hub.SetSlice(endpoints("s0", "10.2.0.3"))
	c.quiet(200 * time.Millisecond)
	c.ack(full)
	r := c.recv()
	if diff := cmp.Diff([]string{key("s0"), key("s1")}, upsertKeys(r)); diff != "" {
		t.Errorf("coalesced update (-want +got):\n%s", diff)
	}
	if ep := r.GetUpserts()[0].GetServicePort().GetEndpoints(); len(ep) != 1 || ep[0].GetIp() != "10.2.0.3" {
		t.Errorf("s0 endpoints %v, want the latest", ep)
	}
	c.nack(r, "no room")
	c.quiet(200 * time.Millisecond) // a nack is not answered by resending
	nodes, err := doormanv1.NewInspectServiceClient(e.cc).ListNodes(context.Background(), &doormanv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var n1 *doormanv1.NodeStatus
	for _, n := range nodes.GetNodes() {
		if n.GetName() == "n1" {
			n1 = n
		}
	}
	if n1 == nil || !n1.GetConnected() || n1.GetLastNack() != "no room" || n1.GetLastNackVersion() != r.GetVersion() || n1.GetAckedVersion() != full.GetVersion() || n1.GetInFlightVersion() != 0 {
		t.Errorf("ListNodes n1 = %v", n1)
	}
	e.hub.DeleteService("ns", "s2")
	heal := c.recv()
	if diff := cmp.Diff([]string{key("s0"), key("s1")}, upsertKeys(heal)); diff != "" {
		t.Errorf("healing upserts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{key("s2")}, heal.GetRemovals()); diff != "" {
		t.Errorf("healing removals (-want +got):\n%s", diff)
	}
	c.ack(heal)
}

func TestStuckNodeDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t, 3)
	stuck := e.connect("n1", nil)
	stuck.recv() // never acked
	fast := e.connect("n2", nil)
	fast.ack(fast.recv())
	for i := range 5 {
		e.hub.SetSlice(endpoints("s0", fmt.Sprintf("10.3.0.%d", i+1)))
		r := fast.recv()
		if diff := cmp.Diff([]string{key("s0")}, upsertKeys(r)); diff != "" {
			t.Fatalf("update %d (-want +got):\n%s", i, diff)
		}
		fast.ack(r)
	}
	stuck.quiet(100 * time.Millisecond)
}

func TestOneMarshalForHundredStreams(t *testing.T) {
	e := newEnv(t, 5)
	var clients []*client
	for i := range 100 {
		c := e.connect(fmt.Sprintf("node-%03d", i), nil)
		c.ack(c.recv())
		clients = append(clients, c)
	}
	before := e.hub.Stats().Marshals
	e.hub.SetSlice(endpoints("s1", "10.4.0.1", "10.4.0.2"))
	for _, c := range clients {
		r := c.recv()
		if diff := cmp.Diff([]string{key("s1")}, upsertKeys(r)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	}
	if got := e.hub.Stats().Marshals - before; got != 1 {
		t.Errorf("%d entry marshals for one change streamed to 100 nodes, want 1", got)
	}
}

func TestInspect(t *testing.T) {
	e := newEnv(t, 2)
	c := e.connect("n1", nil)
	c.ack(c.recv())
	ins := doormanv1.NewInspectServiceClient(e.cc)
	ctx := context.Background()
	nv, err := ins.GetNodeView(ctx, &doormanv1.GetNodeViewRequest{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, en := range nv.GetEntries() {
		got = append(got, en.GetKey())
	}
	if diff := cmp.Diff([]string{"node", key("s0"), key("s1")}, got); diff != "" {
		t.Errorf("GetNodeView keys (-want +got):\n%s", diff)
	}
	if nv.GetViewDigest() != c.digests().View() {
		t.Error("GetNodeView digest differs from what the agent holds")
	}
	svc, err := ins.GetService(ctx, &doormanv1.GetServiceRequest{Namespace: "ns", Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range svc.GetNodes() {
		nodes = append(nodes, n.GetNodeName())
		if len(n.GetEntries()) != 1 || n.GetEntries()[0].GetKey() != key("s1") {
			t.Errorf("node %s entries %v", n.GetNodeName(), n.GetEntries())
		}
	}
	if diff := cmp.Diff([]string{"n1", "n2"}, nodes); diff != "" {
		t.Errorf("GetService nodes (-want +got):\n%s", diff)
	}
	if _, err := ins.GetNodeView(ctx, &doormanv1.GetNodeViewRequest{NodeName: "nope"}); err == nil {
		t.Error("GetNodeView of an unknown node succeeded")
	}
	if _, err := ins.GetService(ctx, &doormanv1.GetServiceRequest{Namespace: "ns", Name: "nope"}); err == nil {
		t.Error("GetService of an unknown service succeeded")
	}
}
