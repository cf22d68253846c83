package stream

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// refusingControlPlane refuses every Hello as a control plane that does not
// serve the agent's protocol does.
type refusingControlPlane struct {
	doormanv1.UnimplementedAgentServiceServer
	hellos chan *doormanv1.Hello
}

const refusal = "the agent on node node-1 speaks stream protocol 1, older than this control plane (v9.0.0) serves agent protocols 2 to 2: upgrade the agent"

func (cp *refusingControlPlane) Sync(stream grpc.BidiStreamingServer[doormanv1.SyncRequest, doormanv1.SyncResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	select {
	case cp.hellos <- first.GetHello():
	default:
	}
	return status.Error(codes.FailedPrecondition, refusal)
}

func TestRefusedVersionRetries(t *testing.T) {
	n := &network{}
	refusing := &refusingControlPlane{hellos: make(chan *doormanv1.Hello, 10)}
	lis := n.listen(t, "cp-old")
	srv := grpc.NewServer()
	doormanv1.RegisterAgentServiceServer(srv, refusing)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	a := agent.New("node-1", state.New(), &memKernel{}, nil)
	start(t, n, a, "passthrough:///cp-old")
	for range 3 {
		h := receive(t, refusing.hellos, "hello")
		if h.GetProtocol() != version.Protocol || h.GetAgentVersion() != version.Get().String() {
			t.Errorf("hello says protocol %d, version %q; want %d, %q", h.GetProtocol(), h.GetAgentVersion(), version.Protocol, version.Get().String())
		}
	}
	if got := a.Status(false).GetLastError(); !strings.Contains(got, refusal) {
		t.Errorf("last error %q does not carry the refusal", got)
	}
}
