package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

var agentUser = ServiceAccountUser("doorman-system", "doorman-nodeagent")

// identity is what the fake API server knows about a token.
type identity struct {
	user      string
	audiences []string
	node      string
	// may lists the resources ("services", "endpointslices") the user may list.
	may []string
}

var tokens = map[string]identity{
	"agent-n1":        {user: agentUser, audiences: []string{"doorman"}, node: "n1"},
	"agent-n2":        {user: agentUser, audiences: []string{"doorman"}, node: "n2"},
	"agent-unbound":   {user: agentUser, audiences: []string{"doorman"}},
	"agent-apiserver": {user: agentUser, audiences: []string{"https://kubernetes.default.svc"}, node: "n1"},
	"other-sa":        {user: ServiceAccountUser("default", "web"), audiences: []string{"doorman"}, node: "n1"},
	"admin":           {user: "admin", audiences: []string{"doorman"}, may: []string{"services", "endpointslices"}},
	"services-only":   {user: "half", audiences: []string{"doorman"}, may: []string{"services"}},
}

// fakeAPI answers TokenReviews and SubjectAccessReviews from tokens and
// counts them; down makes every review fail. Besides tokens, it knows
// "agent:<node>" and JWTs whose payload has a "node" claim as agents'
// tokens bound to that node.
type fakeAPI struct {
	reviews, accesses atomic.Int32
	down              atomic.Bool
	// delay is each review's latency.
	delay time.Duration
	// reviewed, when set, is called with each reviewed token, in order.
	reviewed func(token string)
}

// lookup returns what the fake API server knows of a token.
func lookup(token string) (identity, bool) {
	if node, ok := strings.CutPrefix(token, "agent:"); ok {
		return identity{user: agentUser, audiences: []string{"doorman"}, node: node}, true
	}
	if parts := strings.Split(token, "."); len(parts) == 3 {
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		var claims struct{ Node string }
		if err == nil && json.Unmarshal(b, &claims) == nil && claims.Node != "" {
			return identity{user: agentUser, audiences: []string{"doorman"}, node: claims.Node}, true
		}
	}
	id, ok := tokens[token]
	return id, ok
}

// jwt makes a token the fake knows as an agent's bound to node, with exp
// as its expiry (Unix seconds; 0: none).
func jwt(node string, exp int64) string {
	claims := map[string]any{"node": node}
	if exp != 0 {
		claims["exp"] = exp
	}
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

func (f *fakeAPI) client() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		f.reviews.Add(1)
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if f.reviewed != nil {
			f.reviewed(tr.Spec.Token)
		}
		time.Sleep(f.delay)
		if f.down.Load() {
			return true, nil, errors.New("connection refused")
		}
		id, ok := lookup(tr.Spec.Token)
		var auds []string
		for _, a := range id.audiences {
			for _, want := range tr.Spec.Audiences {
				if a == want {
					auds = append(auds, a)
				}
			}
		}
		if !ok || len(auds) == 0 {
			tr.Status = authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}
			return true, tr, nil
		}
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: auds, User: authenticationv1.UserInfo{Username: id.user}}
		if id.node != "" {
			tr.Status.User.Extra = map[string]authenticationv1.ExtraValue{NodeNameExtra: {id.node}}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		f.accesses.Add(1)
		sar := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview).DeepCopy()
		for _, id := range tokens {
			if id.user != sar.Spec.User {
				continue
			}
			for _, r := range id.may {
				if r == sar.Spec.ResourceAttributes.Resource && sar.Spec.ResourceAttributes.Verb == "list" && sar.Spec.ResourceAttributes.Namespace == "" {
					sar.Status.Allowed = true
				}
			}
		}
		return true, sar, nil
	})
	return c
}

func newAuth(t *testing.T, f *fakeAPI, now func() time.Time) *Authenticator {
	t.Helper()
	return newAuthLimits(t, f, now, Limits{})
}

func newAuthLimits(t *testing.T, f *fakeAPI, now func() time.Time, l Limits) *Authenticator {
	t.Helper()
	a, err := New(Config{Client: f.client(), AgentUser: agentUser, Now: now, Limits: l})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAgent(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		down     bool
		wantNode string
		wantCode codes.Code
	}{
		{name: "no token", token: "", wantCode: codes.Unauthenticated},
		{name: "unknown token", token: "garbage", wantCode: codes.Unauthenticated},
		{name: "another audience", token: "agent-apiserver", wantCode: codes.Unauthenticated},
		{name: "another service account", token: "other-sa", wantCode: codes.PermissionDenied},
		{name: "not bound to a node", token: "agent-unbound", wantCode: codes.PermissionDenied},
		{name: "user without node", token: "admin", wantCode: codes.PermissionDenied},
		{name: "api server down", token: "agent-n1", down: true, wantCode: codes.Unavailable},
		{name: "bound to n1", token: "agent-n1", wantNode: "n1", wantCode: codes.OK},
		{name: "bound to n2", token: "agent-n2", wantNode: "n2", wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeAPI{}
			f.down.Store(tt.down)
			adm, err := newAuth(t, f, nil).Agent(context.Background(), tt.token)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if adm.Node != tt.wantNode {
				t.Errorf("node = %q, want %q", adm.Node, tt.wantNode)
			}
		})
	}
}

func TestInspector(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		wantCode codes.Code
	}{
		{name: "no token", token: "", wantCode: codes.Unauthenticated},
		{name: "invalid token", token: "garbage", wantCode: codes.Unauthenticated},
		{name: "another audience", token: "agent-apiserver", wantCode: codes.Unauthenticated},
		{name: "agent may not list", token: "agent-n1", wantCode: codes.PermissionDenied},
		{name: "services but not endpointslices", token: "services-only", wantCode: codes.PermissionDenied},
		{name: "may list both", token: "admin", wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newAuth(t, &fakeAPI{}, nil).Inspector(context.Background(), tt.token)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
		})
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1000, 0)
	f := &fakeAPI{}
	a := newAuth(t, f, func() time.Time { return now })
	ctx := context.Background()
	check := func(step string, token string, wantCode codes.Code, wantReviews int32) {
		t.Helper()
		_, err := a.Agent(ctx, token)
		if got := status.Code(err); got != wantCode {
			t.Fatalf("%s: code = %v (%v), want %v", step, got, err, wantCode)
		}
		if got := f.reviews.Load(); got != wantReviews {
			t.Fatalf("%s: %d token reviews, want %d", step, got, wantReviews)
		}
	}
	check("first", "agent-n1", codes.OK, 1)
	check("again", "agent-n1", codes.OK, 1)
	check("refusal", "garbage", codes.Unauthenticated, 2)
	check("refusal again", "garbage", codes.Unauthenticated, 2)
	now = now.Add(DefaultSuccessTTL)
	check("expired", "agent-n1", codes.OK, 3)
	f.down.Store(true)
	check("outage, new token", "agent-n2", codes.Unavailable, 4)
	check("outage is not cached", "agent-n2", codes.Unavailable, 5)
	check("cached good token survives the outage", "agent-n1", codes.OK, 5)
	f.down.Store(false)
	check("back", "agent-n2", codes.OK, 6)

	// Inspect is cached apart from agents: an agent token does not skip
	// the access review.
	if err := a.Inspector(ctx, "agent-n1"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("inspect with an agent token: %v", err)
	}
	if err := a.Inspector(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	before := f.accesses.Load()
	if err := a.Inspector(ctx, "admin"); err != nil {
		t.Fatal(err)
	}
	if got := f.accesses.Load(); got != before {
		t.Errorf("access reviews: %d after a cached call, want %d", got, before)
	}
}

// agentServer reads the Hello and answers with one update naming the node.
type agentServer struct {
	doormanv1.UnimplementedAgentServiceServer
}

func (agentServer) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := stream.Send(&doormanv1.SyncResponse{Version: uint64(len(req.GetHello().GetNodeName()))}); err != nil {
		return err
	}
	_, err = stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

type inspectServer struct {
	doormanv1.UnimplementedInspectServiceServer
}

func (inspectServer) ListNodes(context.Context, *doormanv1.ListNodesRequest) (*doormanv1.ListNodesResponse, error) {
	return &doormanv1.ListNodesResponse{Version: 7}, nil
}

// serveWith serves, over an in-memory listener until the test ends, a gRPC
// server with a's interceptors and what register registers, and returns a
// client connection to it.
func serveWith(t *testing.T, a *Authenticator, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(a.ServerOptions()...)
	register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func TestInterceptors(t *testing.T) {
	a := newAuth(t, &fakeAPI{}, nil)
	cc := serveWith(t, a, func(gs *grpc.Server) {
		doormanv1.RegisterAgentServiceServer(gs, agentServer{})
		doormanv1.RegisterInspectServiceServer(gs, inspectServer{})
		reflection.Register(gs)
	})

	withToken := func(token string) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		if token == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}

	syncTests := []struct {
		name     string
		token    string
		node     string
		wantCode codes.Code
	}{
		{name: "no token", node: "n1", wantCode: codes.Unauthenticated},
		{name: "another node", token: "agent-n1", node: "n2", wantCode: codes.PermissionDenied},
		{name: "empty node name", token: "agent-n1", node: "", wantCode: codes.PermissionDenied},
		{name: "own node", token: "agent-n1", node: "n1", wantCode: codes.OK},
	}
	for _, tt := range syncTests {
		t.Run("sync/"+tt.name, func(t *testing.T) {
			stream, err := doormanv1.NewAgentServiceClient(cc).Sync(withToken(tt.token))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: tt.node}}}); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if err == nil {
				if diff := cmp.Diff(uint64(len(tt.node)), resp.GetVersion()); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
				_ = stream.CloseSend()
			}
		})
	}

	inspectTests := []struct {
		name     string
		token    string
		wantCode codes.Code
	}{
		{name: "no token", wantCode: codes.Unauthenticated},
		{name: "agent token", token: "agent-n1", wantCode: codes.PermissionDenied},
		{name: "allowed user", token: "admin", wantCode: codes.OK},
	}
	for _, tt := range inspectTests {
		t.Run("inspect/"+tt.name, func(t *testing.T) {
			_, err := doormanv1.NewInspectServiceClient(cc).ListNodes(withToken(tt.token), &doormanv1.ListNodesRequest{})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
		})
	}

	t.Run("reflection is open", func(t *testing.T) {
		rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(withToken(""))
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := rs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetListServicesResponse().GetService()); n < 2 {
			t.Errorf("%d services listed, want at least 2", n)
		}
	})
}
