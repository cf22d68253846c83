package inspect

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

type source struct {
	ready atomic.Bool
	state *doormanv1.GetStateResponse
}

func (s *source) Status(entries bool) *doormanv1.GetStateResponse {
	out := &doormanv1.GetStateResponse{NodeName: s.state.NodeName, Version: s.state.Version, ServicePorts: s.state.ServicePorts, LoadedFrom: s.state.LoadedFrom}
	if entries {
		out.Entries = s.state.Entries
	}
	return out
}

func (s *source) Ready() bool { return s.ready.Load() }

type kernel struct {
	resp *doormanv1.GetKernelResponse
	err  error
}

func (k *kernel) Inspect(elements bool) (*doormanv1.GetKernelResponse, error) {
	if k.err != nil {
		return nil, k.err
	}
	out := &doormanv1.GetKernelResponse{Table: k.resp.Table}
	for _, m := range k.resp.Maps {
		km := &doormanv1.KernelMap{Name: m.Name, Type: m.Type, ElementCount: m.ElementCount}
		if elements {
			km.Elements = m.Elements
		}
		out.Maps = append(out.Maps, km)
	}
	return out, nil
}

func serve(t *testing.T, s *Server) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///inspect", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestInspect(t *testing.T) {
	entry := &doormanv1.Entry{Key: "default/web:http/tcp/ipv4", Digest: 1}
	src := &source{state: &doormanv1.GetStateResponse{NodeName: "node-1", Version: 4, ServicePorts: 1, LoadedFrom: "cache", Entries: []*doormanv1.Entry{entry}}}
	table := &doormanv1.GetKernelResponse{Table: "doorman", Maps: []*doormanv1.KernelMap{
		{Name: "service-ips", Type: "ipv4_addr . inet_proto . inet_service : verdict", ElementCount: 1, Elements: []string{"10.96.0.10 . tcp . 80 : goto service-1"}},
	}}
	ctx := context.Background()
	client := doormanv1.NewAgentInspectServiceClient(serve(t, New(src, &kernel{resp: table})))
	failing := doormanv1.NewAgentInspectServiceClient(serve(t, New(src, &kernel{err: errors.New("netlink: permission denied")})))

	for _, tc := range []struct {
		name     string
		call     func() (any, error)
		want     any
		wantCode codes.Code
	}{
		{"state summary", func() (any, error) { return client.GetState(ctx, &doormanv1.GetStateRequest{}) },
			&doormanv1.GetStateResponse{NodeName: "node-1", Version: 4, ServicePorts: 1, LoadedFrom: "cache"}, codes.OK},
		{"state with entries", func() (any, error) { return client.GetState(ctx, &doormanv1.GetStateRequest{Entries: true}) },
			&doormanv1.GetStateResponse{NodeName: "node-1", Version: 4, ServicePorts: 1, LoadedFrom: "cache", Entries: []*doormanv1.Entry{entry}}, codes.OK},
		{"kernel counts", func() (any, error) { return client.GetKernel(ctx, &doormanv1.GetKernelRequest{}) },
			&doormanv1.GetKernelResponse{Table: "doorman", Maps: []*doormanv1.KernelMap{{Name: "service-ips", Type: "ipv4_addr . inet_proto . inet_service : verdict", ElementCount: 1}}}, codes.OK},
		{"kernel elements", func() (any, error) { return client.GetKernel(ctx, &doormanv1.GetKernelRequest{Elements: true}) }, table, codes.OK},
		{"kernel unreadable", func() (any, error) { return failing.GetKernel(ctx, &doormanv1.GetKernelRequest{}) }, nil, codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.call()
			if code := status.Code(err); code != tc.wantCode {
				t.Fatalf("code %v (%v), want %v", code, err, tc.wantCode)
			}
			if tc.wantCode != codes.OK {
				return
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReflectionListsTheService(t *testing.T) {
	conn := serve(t, New(&source{state: &doormanv1.GetStateResponse{}}, &kernel{}))
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	want := []string{"doorman.v1.AgentInspectService", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
}

func TestHealth(t *testing.T) {
	src := &source{state: &doormanv1.GetStateResponse{}}
	updated := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	now := updated.Add(90 * time.Second)
	h := Health(src, func() time.Time { return updated }, func() time.Time { return now })
	// kube-proxy's body: probes and upstream tests read lastUpdated.
	wantBody := map[string]any{"lastUpdated": "2026-01-02T03:04:05.000000006Z", "currentTime": "2026-01-02T03:05:35.000000006Z", "nodeEligible": true}
	for _, tc := range []struct {
		name  string
		ready bool
		path  string
		want  int
	}{
		{"before the kernel holds a view", false, "/healthz", http.StatusServiceUnavailable},
		{"once it does", true, "/healthz", http.StatusOK},
		{"livez before", false, "/livez", http.StatusServiceUnavailable},
		{"livez once it does", true, "/livez", http.StatusOK},
		{"other paths", true, "/metrics", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.ready.Store(tc.ready)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			if rec.Code != tc.want {
				t.Errorf("GET %s = %d, want %d", tc.path, rec.Code, tc.want)
			}
			if tc.want == http.StatusNotFound {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("GET %s: Content-Type %q, want application/json", tc.path, ct)
			}
			var got map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("GET %s: body %q: %v", tc.path, rec.Body.String(), err)
			}
			if diff := cmp.Diff(wantBody, got); diff != "" {
				t.Errorf("GET %s body (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}
