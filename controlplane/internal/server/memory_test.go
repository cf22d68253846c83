package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/internal/race"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// The memory test's clients run in a child process (this test binary
// again) so that the server process holds only the server's memory.
const (
	memClientsEnv = "DOORMAN_MEMTEST_CLIENTS" // "address nodes"
	memNodes      = 200
	memServices   = 2000
)

// serveTCP serves h with the server's transport options on a loopback TCP
// port until the test ends, and returns its address.
func serveTCP(t *testing.T, h *hub.Hub) net.Addr {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(Options()...)
	Register(gs, h, nil)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		h.Close()
		gs.Stop()
	})
	return lis.Addr()
}

// filledHub returns a ready hub with services ClusterIP Services of two
// endpoints each and the nodes n0…n(nodes-1).
func filledHub(services, nodes int) *hub.Hub {
	h := hub.New(hub.Config{VersionSeed: 1000})
	for i := range services {
		name := fmt.Sprintf("s%d", i)
		ip := fmt.Sprintf("10.%d.%d.%d", 96+i>>16, (i>>8)&255, i&255)
		h.SetService(&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
			},
		})
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
		}
		for j := range 2 {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 1+2*(i>>16)+j, (i>>8)&255, i&255)}})
		}
		h.SetSlice(s)
	}
	for n := range nodes {
		h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", n)}})
	}
	h.MarkReady()
	return h
}

type memSample struct{ heap, stack, idle, goroutines, rss uint64 }

func sampleMemory(t *testing.T) memSample {
	t.Helper()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapAlloc, stack: ms.StackInuse, idle: ms.HeapIdle - ms.HeapReleased, goroutines: uint64(runtime.NumGoroutine()), rss: rssBytes(t)}
}

func rssBytes(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestMemoryPerNode connects memNodes real agents (each on its own TCP
// connection, in a child process) that sync a memServices view and ack,
// and reports the server's heap and RSS growth per connected node.
func TestMemoryPerNode(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	h := filledHub(memServices, memNodes)
	addr := serveTCP(t, h)

	before := sampleMemory(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryClients$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", memClientsEnv, addr, memNodes))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "synced ") {
				ready <- nil
			} else if strings.HasPrefix(line, "failed ") {
				ready <- fmt.Errorf("clients: %s", line)
			}
		}
		ready <- io.ErrUnexpectedEOF
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("clients did not sync within 2 minutes")
	}
	// Every node has acked: wait for the server's streams to go idle.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, nodes := h.Nodes()
		acked := 0
		for _, n := range nodes {
			if n.Connected && n.Acked != 0 && n.InFlight == 0 {
				acked++
			}
		}
		if acked == memNodes {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes acked", acked, memNodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	after := sampleMemory(t)
	if p := os.Getenv("DOORMAN_MEMTEST_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	heapPer := (int64(after.heap) - int64(before.heap)) / memNodes
	rssPer := (int64(after.rss) - int64(before.rss)) / memNodes
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / memNodes }
	t.Logf("%d nodes, %d services: shared heap %.1f MiB, rss %.1f MiB; per node: heap %.1f KiB, rss %.1f KiB (stacks %.1f KiB, goroutines %.1f, heap held free %.1f KiB)",
		memNodes, memServices, float64(before.heap)/(1<<20), float64(before.rss)/(1<<20), float64(heapPer)/1024, float64(rssPer)/1024,
		per(after.stack, before.stack)/1024, per(after.goroutines, before.goroutines), per(after.idle, before.idle)/1024)
	debug.FreeOSMemory()
	rssHeld := (int64(rssBytes(t)) - int64(before.rss)) / memNodes
	t.Logf("per node after returning free heap to the OS: rss %.1f KiB", float64(rssHeld)/1024)
	// The README's target: what a connected node keeps resident, once the
	// heap it freed is returned to the OS.
	budget := memBudgetPerNode * race.MemoryFactor()
	if rssHeld > budget {
		t.Errorf("rss per connected node %.1f KiB, want at most %d KiB", float64(rssHeld)/1024, budget>>10)
	}
	if heapPer > budget {
		t.Errorf("heap per connected node %.1f KiB, want at most %d KiB", float64(heapPer)/1024, budget>>10)
	}
}

// memBudgetPerNode is the control plane's memory target per connected node.
const memBudgetPerNode = 64 << 10

// TestMemoryClients is the child process of TestMemoryPerNode.
func TestMemoryClients(t *testing.T) {
	spec := os.Getenv(memClientsEnv)
	if spec == "" {
		t.Skip("only run as TestMemoryPerNode's child process")
	}
	var addr string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %d", &addr, &n); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := memClient(ctx, addr, fmt.Sprintf("n%d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Printf("failed %v\n", err)
		return
	default:
	}
	fmt.Printf("synced %d\n", n)
	// Stay connected until the parent closes stdin.
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// memClient opens one node's stream, receives the full view and acks it;
// the connection stays open until ctx ends.
func memClient(ctx context.Context, addr, node string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { _ = cc.Close() })
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(ctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: node}}}); err != nil {
		return err
	}
	r, err := stream.Recv()
	if err != nil {
		return err
	}
	if !r.GetFull() || len(r.GetUpserts()) < memServices {
		return fmt.Errorf("%s: got %d upserts (full %t), want a full view of %d", node, len(r.GetUpserts()), r.GetFull(), memServices)
	}
	d := &doormanv1.Digests{}
	for _, e := range r.GetUpserts() {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	if d.View() != r.GetViewDigest() {
		return fmt.Errorf("%s: view digest %x, update says %x", node, d.View(), r.GetViewDigest())
	}
	return stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: r.GetVersion(), ViewDigest: d.View()}}})
}

// TestLargeFullView streams a full view of 20,000 Services to one agent
// with the server's transport options.
func TestLargeFullView(t *testing.T) {
	if testing.Short() {
		t.Skip("large view skipped in -short mode")
	}
	const services = 20000
	h := filledHub(services, 1)
	addr := serveTCP(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n0"}}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.GetUpserts()); !r.GetFull() || got < services {
		t.Fatalf("got %d upserts (full %t), want a full view of %d services", got, r.GetFull(), services)
	}
	t.Logf("full view of %d services: %d bytes in %v", services, proto.Size(r), time.Since(start))
}
