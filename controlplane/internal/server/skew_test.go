package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// hello opens a stream with h and returns its first answer.
func (e *env) hello(h *doormanv1.Hello) (*doormanv1.SyncResponse, error) {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	stream, err := doormanv1.NewAgentServiceClient(e.cc).Sync(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: h}}); err != nil {
		e.t.Fatal(err)
	}
	return stream.Recv()
}

func TestHandshakeSkew(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello *doormanv1.Hello
		// want: "" served, else what the FailedPrecondition must say.
		want []string
	}{
		{"same protocol", &doormanv1.Hello{NodeName: "n1", Protocol: version.Protocol, AgentVersion: "v0.9.0"}, nil},
		{"agent from before Hello carried its protocol", &doormanv1.Hello{NodeName: "n1"}, nil},
		{"agent newer than the control plane", &doormanv1.Hello{NodeName: "n1", Protocol: version.Protocol + 1, AgentVersion: "v9.0.0"},
			[]string{"node n1 (v9.0.0)", "protocol 3", version.Get().String(), "upgrade the control plane first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1)
			r, err := e.hello(tc.hello)
			if tc.want == nil {
				if err != nil || !r.GetFull() {
					t.Fatalf("first answer %v, %v; want a full view", r, err)
				}
				return
			}
			if status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("first answer %v, %v; want FailedPrecondition", r, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(status.Convert(err).Message(), w) {
					t.Errorf("refusal %q does not say %q", status.Convert(err).Message(), w)
				}
			}
		})
	}
}

func TestInspectAgentVersion(t *testing.T) {
	e := newEnv(t, 1)
	if _, err := e.hello(&doormanv1.Hello{NodeName: "n1", Protocol: version.Protocol, AgentVersion: "v0.9.0 (commit abc)"}); err != nil {
		t.Fatal(err)
	}
	nodes, err := doormanv1.NewInspectServiceClient(e.cc).ListNodes(context.Background(), &doormanv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, n := range nodes.GetNodes() {
		got[n.GetName()] = n.GetAgentVersion()
		if n.GetName() == "n1" && n.GetAgentProtocol() != version.Protocol {
			t.Errorf("n1 agent_protocol %d, want %d", n.GetAgentProtocol(), version.Protocol)
		}
	}
	if got["n1"] != "v0.9.0 (commit abc)" || got["n2"] != "" {
		t.Errorf("agent versions %v, want n1's from its Hello and none for n2", got)
	}
}
