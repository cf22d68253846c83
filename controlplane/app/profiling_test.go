package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Go's profiles are served on the HTTP listener only with Profiling, and
// the health and metrics paths are served either way.
func TestProfiling(t *testing.T) {
	for _, on := range []bool{false, true} {
		base := runWithHTTP(t, on)
		code, body := get(t, base+"/debug/pprof/")
		if served := code == http.StatusOK && strings.Contains(body, "goroutine"); served != on {
			t.Errorf("Profiling %v: /debug/pprof/ answered %d (%.60q)", on, code, body)
		}
		if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
			t.Errorf("Profiling %v: /metrics answered %d", on, code)
		}
	}
}

// runWithHTTP runs a control plane with an HTTP listener until the test
// ends and returns the listener's base URL once /readyz answers 200.
func runWithHTTP(t *testing.T, profiling bool) string {
	t.Helper()
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	go func() {
		done <- Run(ctx, Config{Client: client, GRPCListener: gl, HTTPListener: hl, Profiling: profiling, VersionSeed: 7})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + hl.Addr().String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := get(t, base+"/readyz"); code == http.StatusOK {
			return base
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not answer 200 within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
