package inspect

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

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

// Health serves /healthz and /livez as kube-proxy does, so probes, load
// balancers and tools written for it keep working: 200 once the kernel
// holds a view (from the cache or the stream), 503 before; the body is
// kube-proxy's JSON, lastUpdated being the last kernel commit (the
// agent's start before the first). nodeEligible is always true: doorman
// does not take a node out of load balancers itself.
func Health(source Source, lastUpdated func() time.Time, now func() time.Time) http.Handler {
	serve := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if !source.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		body := struct {
			LastUpdated  string `json:"lastUpdated"`
			CurrentTime  string `json:"currentTime"`
			NodeEligible bool   `json:"nodeEligible"`
		}{
			LastUpdated:  lastUpdated().UTC().Format(time.RFC3339Nano),
			CurrentTime:  now().UTC().Format(time.RFC3339Nano),
			NodeEligible: true,
		}
		_ = json.NewEncoder(w).Encode(body)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", serve)
	mux.HandleFunc("/livez", serve)
	return mux
}
