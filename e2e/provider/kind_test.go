package provider

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/e2e/echo"
)

// fakePodProxy plays the API server's Pod proxy in front of one control
// endpoint: /api/v1/namespaces/NS/pods/http:NAME:PORT/proxy/PATH.
func fakePodProxy(t *testing.T, ctl *echo.Control) *Kind {
	t.Helper()
	h := ctl.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.SplitN(r.URL.Path, "/proxy/", 2)
		if len(parts) != 2 || !strings.HasSuffix(parts[0], ":19090") {
			http.Error(w, "not a pod proxy path: "+r.URL.Path, http.StatusNotFound)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + parts[1]
		r2.RequestURI = ""
		h.ServeHTTP(w, r2)
	}))
	t.Cleanup(srv.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &Kind{client: cs, dialers: map[string]string{"node-a": "dialer-a"}}
}

func TestKindAskThroughPodProxy(t *testing.T) {
	srv := echo.NewServer("backend-0")
	t.Cleanup(func() { _ = srv.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.ServeTCP(ln)
	ctl := echo.NewControl(true)
	t.Cleanup(func() { _ = ctl.Close() })
	k := fakePodProxy(t, ctl)
	a, err := k.FromNode("node-a")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("answer", func(t *testing.T) {
		got, err := a.Ask(ctx, "tcp", ln.Addr().String(), "hostname")
		if err != nil || got != "backend-0" {
			t.Fatalf("Ask = %q, %v; want backend-0", got, err)
		}
	})
	t.Run("refusal is a refusal, with the time it took there", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		_ = l.Close()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err = a.Ask(cctx, "tcp", dead, "hostname")
		asked := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrNotAsked) {
			t.Fatalf("Ask a closed port: %v; want a refusal", err)
		}
		// The dialer runs in this process: its time is part of the Ask's.
		if took, ok := echo.Took(err); !ok || took < 0 || took > asked {
			t.Errorf("Took = %v, %t; want the dialer's time, within the Ask's %v", took, ok, asked)
		}
	})
	t.Run("proxy failure is not a failed request", func(t *testing.T) {
		// The endpoint answers 404 for an unknown flow, as the API server
		// answers errors of its own: neither is the request failing.
		_, err := (&proxyFlow{a: a.(*proxyAsker), id: "nope"}).Ask(ctx, "hostname")
		if !errors.Is(err, ErrNotAsked) || errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("proxy error %v does not wrap ErrNotAsked", err)
		}
	})
	t.Run("flow keeps its client address", func(t *testing.T) {
		f, err := a.OpenFlow(ctx, "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		first, err1 := f.Ask(ctx, "clientip")
		second, err2 := f.Ask(ctx, "clientip")
		if err1 != nil || err2 != nil || first == "" || first != second {
			t.Errorf("flow clientip %q (%v) then %q (%v); want one address twice", first, err1, second, err2)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Run("unary call forwarded to the node's loopback", func(t *testing.T) {
		gs := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus("doorman", healthpb.HealthCheckResponse_SERVING)
		healthpb.RegisterHealthServer(gs, hs)
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = gs.Serve(gl) }()
		t.Cleanup(gs.Stop)
		u := &unaryForwarder{k: k, pod: "dialer-a", addr: gl.Addr().String()}
		resp, err := healthpb.NewHealthClient(u).Check(ctx, &healthpb.HealthCheckRequest{Service: "doorman"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("status %v, want SERVING", resp.GetStatus())
		}
	})
}

func TestExternalAddress(t *testing.T) {
	for _, tc := range []struct {
		prefix, want string
		nodes        []Node
	}{
		{"172.18.0.0/16", "172.18.255.253", nil},
		{"192.168.49.0/24", "192.168.49.253", nil},
		{"10.0.0.0/30", "", nil},
		{"192.168.49.0/24", "", []Node{{Name: "n", IP: "192.168.49.253"}}},
	} {
		got, err := externalAddress(netip.MustParsePrefix(tc.prefix), tc.nodes)
		if tc.want == "" {
			if err == nil {
				t.Errorf("externalAddress(%s) = %s, want an error", tc.prefix, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("externalAddress(%s) = %s, %v; want %s", tc.prefix, got, err, tc.want)
		}
	}
}

// TestCreateInNewNamespace: a create refused because the namespace still
// looks terminating (as the API server's NamespaceLifecycle admission
// answers) is tried again until it passes; any other error ends it at once.
func TestCreateInNewNamespace(t *testing.T) {
	terminating := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "dialer",
		errors.New("unable to create new content in namespace doorman-e2e-dialers because it is being terminated"))
	terminating.ErrStatus.Details.Causes = append(terminating.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: corev1.NamespaceTerminatingCause, Message: "namespace doorman-e2e-dialers is being terminated", Field: "metadata.namespace"})
	other := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "dialer", errors.New("denied by policy"))
	for _, tc := range []struct {
		name      string
		answers   []error // the create's answers in turn; the last repeats
		wantCalls int
		wantErr   error
	}{
		{"created at once", []error{nil}, 1, nil},
		{"terminating twice, then created", []error{terminating, terminating, nil}, 3, nil},
		{"another refusal is not retried", []error{other}, 1, other},
		{"terminating, then another refusal", []error{terminating, other}, 2, other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := createInNewNamespace(context.Background(), func() error {
				calls++
				return tc.answers[min(calls, len(tc.answers))-1]
			})
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if calls != tc.wantCalls {
				t.Errorf("create called %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}
