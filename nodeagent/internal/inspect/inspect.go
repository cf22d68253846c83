package inspect

import (
	"context"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Source is the agent's state (*agent.Agent).
type Source interface {
	Status(entries bool) *doormanv1.GetStateResponse
	Ready() bool
}

// Kernel reads doorman's table back (*dataplane.Dataplane).
type Kernel interface {
	Inspect(elements bool) (*doormanv1.GetKernelResponse, error)
}

// Server implements AgentInspectService.
type Server struct {
	doormanv1.UnimplementedAgentInspectServiceServer
	source Source
	kernel Kernel
}

// New returns a Server reading from source and kernel.
func New(source Source, kernel Kernel) *Server {
	return &Server{source: source, kernel: kernel}
}

// Register adds the service and server reflection to g.
func (s *Server) Register(g *grpc.Server) {
	doormanv1.RegisterAgentInspectServiceServer(g, s)
	reflection.Register(g)
}

// GetState reports what the agent holds.
func (s *Server) GetState(_ context.Context, req *doormanv1.GetStateRequest) (*doormanv1.GetStateResponse, error) {
	return s.source.Status(req.GetEntries()), nil
}

// GetKernel reports what the kernel holds in doorman's table.
func (s *Server) GetKernel(_ context.Context, req *doormanv1.GetKernelRequest) (*doormanv1.GetKernelResponse, error) {
	resp, err := s.kernel.Inspect(req.GetElements())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read kernel table: %v", err)
	}
	return resp, nil
}

// Health serves /healthz: 200 once the kernel holds a view (from the cache
// or the stream), 503 before.
func Health(source Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !source.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("kernel holds no view yet\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
