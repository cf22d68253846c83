package inspect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

type source struct {
	state *doormanv1.GetStateResponse
}

func (s *source) Status(entries bool) *doormanv1.GetStateResponse {
	out := &doormanv1.GetStateResponse{NodeName: s.state.NodeName, Version: s.state.Version, ServicePorts: s.state.ServicePorts, LoadedFrom: s.state.LoadedFrom,
		LastError: s.state.LastError, NotProgrammed: s.state.NotProgrammed}
	if entries {
		out.Entries = s.state.Entries
	}
	return out
}

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
			&doormanv1.GetStateResponse{NodeName: "node-1", Version: 4, ServicePorts: 1, LoadedFrom: "cache", AgentVersion: version.Get().String()}, codes.OK},
		{"state with entries", func() (any, error) { return client.GetState(ctx, &doormanv1.GetStateRequest{Entries: true}) },
			&doormanv1.GetStateResponse{NodeName: "node-1", Version: 4, ServicePorts: 1, LoadedFrom: "cache", Entries: []*doormanv1.Entry{entry}, AgentVersion: version.Get().String()}, codes.OK},
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

// TestStateTextsBounded: error texts and the not-programmed list are cut,
// and say so.
func TestStateTextsBounded(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	var many []string
	for i := range 250 {
		many = append(many, fmt.Sprintf("default/svc-%03d:http/tcp/ipv4: refused by the kernel: %s", i, long))
	}
	src := &source{state: &doormanv1.GetStateResponse{NodeName: "node-1", LastError: long, NotProgrammed: many}}
	got, err := doormanv1.NewAgentInspectServiceClient(serve(t, New(src, &kernel{}))).GetState(context.Background(), &doormanv1.GetStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, s string) {
		t.Helper()
		if len(s) > MaxText || !utf8.ValidString(s) || !strings.HasSuffix(s, "(cut, 6000 bytes)") && !strings.Contains(what, "item") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v, ends %q; want at most %d, marked as cut", what, len(s), utf8.ValidString(s), s[max(0, len(s)-30):], MaxText)
		}
	}
	check("last error", got.GetLastError())
	np := got.GetNotProgrammed()
	if len(np) != MaxNotProgrammed+1 || np[MaxNotProgrammed] != "+150 more" {
		t.Fatalf("not programmed: %d items ending %q, want %d and \"+150 more\"", len(np), np[len(np)-1], MaxNotProgrammed+1)
	}
	for i, s := range np[:MaxNotProgrammed] {
		check(fmt.Sprintf("not-programmed item %d", i), s)
		if !strings.HasPrefix(s, fmt.Sprintf("default/svc-%03d:", i)) || !strings.Contains(s, "(cut, ") {
			t.Errorf("not-programmed item %d = %.40q…, want svc-%03d, marked as cut", i, s, i)
		}
	}
	if short := Cut("short", MaxText); short != "short" {
		t.Errorf("Cut of a short text = %q", short)
	}
}

// TestListenSocket: the socket is 0600 from the start, serves gRPC, and
// replaces a socket left behind but not another file.
func TestListenSocket(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "doorman")
	path := filepath.Join(dir, "inspect.sock")
	for round := range 2 { // the second finds the first's socket
		lis, err := ListenSocket(path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("round %d: socket mode %v, want a socket, 0600", round, fi.Mode())
		}
		if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
			t.Errorf("directory: %v, %v; want 0700", di.Mode(), err)
		}
		g := grpc.NewServer()
		New(&source{state: &doormanv1.GetStateResponse{NodeName: "node-1"}}, &kernel{}).Register(g)
		go func() { _ = g.Serve(lis) }()
		conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := doormanv1.NewAgentInspectServiceClient(conn).GetState(ctx, &doormanv1.GetStateRequest{})
		cancel()
		_ = conn.Close()
		if err != nil || st.GetNodeName() != "node-1" {
			t.Errorf("round %d: GetState over the socket: %v, %v", round, st, err)
		}
		// Stop the server but leave the socket file, as a killed agent does.
		if ul, ok := lis.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		g.Stop()
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("round %d: socket file gone after stop: %v", round, err)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if lis, err := ListenSocket(path); err == nil {
		_ = lis.Close()
		t.Errorf("ListenSocket over a regular file succeeded")
	}
}
