package app

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// A replica accepts gRPC connections only once its informers have
// synced: until then a connection waits in the backlog (no handshake, no
// admission takes the CPU the first lists need), and it is served as
// soon as they have.
func TestRunServesGRPCOnceSynced(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	release := holdServiceLists(client)
	gl := listenLoopback(t)
	run := startRun(t, Config{Client: client, GRPCListener: gl, VersionSeed: 42})

	conn, err := net.Dial("tcp", gl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	buf := make([]byte, 9) // an HTTP/2 frame header: the server's SETTINGS
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := conn.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("before the informers synced: read %d bytes (%v), want nothing: the connection was served", n, err)
	}
	release()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(buf); err != nil {
		t.Fatalf("once the informers synced: %v, want the server's first frame", err)
	}
	_ = conn.Close()
	run.stop(t)
}

// A replica stopped before its informers synced returns, and lets go of
// its gRPC listener.
func TestRunStopsBeforeSynced(t *testing.T) {
	client := fake.NewClientset()
	release := holdServiceLists(client)
	defer release()
	gl := listenLoopback(t)
	run := startRun(t, Config{Client: client, GRPCListener: gl, VersionSeed: 42})
	time.Sleep(100 * time.Millisecond)
	run.stop(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", gl.Addr().String())
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the gRPC listener still accepts connections after Run returned")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdServiceLists makes client's lists of Services wait until release is
// called, so that the informers cannot sync before then.
func holdServiceLists(client *fake.Clientset) (release func()) {
	held := make(chan struct{})
	client.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		<-held
		return false, nil, nil
	})
	return func() { close(held) }
}

// listenLoopback listens on a free TCP port of the loopback address.
func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// appRun is Run in the background, on a context of its own.
type appRun struct {
	ctx    context.Context // Run's context, done once stop is called
	cancel context.CancelFunc
	done   chan error
}

// startRun runs Run with cfg in the background until stop is called (or
// the test ends).
func startRun(t *testing.T, cfg Config) *appRun {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &appRun{ctx: ctx, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, cfg) }()
	return r
}

// stop cancels Run's context and fails the test unless Run returns, with
// no error, within 10s.
func (r *appRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// syncAs dials addr without TLS and opens a stream on Run's context as
// node, its Hello sent. The connection is closed when the test ends.
func (r *appRun) syncAs(t *testing.T, addr, node string) (*grpc.ClientConn, grpc.BidiStreamingClient[doormanv1.SyncRequest, doormanv1.SyncResponse]) {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(r.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: node}}}); err != nil {
		t.Fatal(err)
	}
	return cc, stream
}
