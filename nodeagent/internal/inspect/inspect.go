package inspect

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Source is the agent's state (*agent.Agent).
type Source interface {
	Status(entries bool) *doormanv1.GetStateResponse
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
	// waiting: why the agent programmed nothing at start-up and waits for
	// a control plane ("": it does not).
	waiting atomic.Pointer[string]
	config  atomic.Pointer[config.Effective]
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

// GetState reports what the agent holds. Its error texts are cut at
// MaxText bytes each, and at most MaxNotProgrammed not-programmed entries
// are listed (then "+N more"): one bad Service must not make every
// answer megabytes long.
func (s *Server) GetState(_ context.Context, req *doormanv1.GetStateRequest) (*doormanv1.GetStateResponse, error) {
	st := s.source.Status(req.GetEntries())
	st.AgentVersion = version.Get().String()
	if w := s.waiting.Load(); w != nil && st.GetVersion() == 0 {
		st.LastError = *w + "; last error: " + st.GetLastError()
	}
	st.LastError = Cut(st.GetLastError(), MaxText)
	st.NotProgrammed = CutList(st.GetNotProgrammed(), MaxNotProgrammed, MaxText)
	return st, nil
}

// Waiting records why the agent programs nothing until a control plane
// answers (a cached view too old to serve): GetState says so in
// last_error until the agent holds a view from the stream.
func (s *Server) Waiting(reason string) { s.waiting.Store(&reason) }

// SetConfig records the agent's effective configuration, for GetConfig.
func (s *Server) SetConfig(c *config.Effective) { s.config.Store(c) }

// GetConfig reports the agent's effective configuration: flag defaults,
// then the --config file, then the command line.
func (s *Server) GetConfig(context.Context, *doormanv1.AgentInspectServiceGetConfigRequest) (*doormanv1.AgentInspectServiceGetConfigResponse, error) {
	c := s.config.Load()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "no configuration recorded")
	}
	text, err := c.YAML()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "configuration: %v", err)
	}
	return &doormanv1.AgentInspectServiceGetConfigResponse{
		ApiVersion: config.APIVersion, Kind: c.Kind, Path: c.Path,
		Yaml: string(text), Fields: c.Strings(),
	}, nil
}

// GetKernel reports what the kernel holds in doorman's table. The Kernel
// reads it on a netlink connection of its own, without waiting for the
// agent's updates (see Config.InspectKernel in nodeagent/app): a read that
// runs while an update commits may show some maps before the commit and
// others after it, or fail (Unavailable); ask again for a settled answer.
func (s *Server) GetKernel(_ context.Context, req *doormanv1.GetKernelRequest) (*doormanv1.GetKernelResponse, error) {
	resp, err := s.kernel.Inspect(req.GetElements())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read kernel table: %v", err)
	}
	return resp, nil
}

// Bounds of what is reported and logged about errors: the wire's own.
const (
	// MaxText is the most bytes of one error text kept.
	MaxText = doormanv1.MaxText
	// MaxNotProgrammed is the most not-programmed entries listed.
	MaxNotProgrammed = doormanv1.MaxTexts
)

// Cut returns s cut to about limit bytes, marked with its full length.
func Cut(s string, limit int) string { return doormanv1.CutText(s, limit) }

// CutList returns the first n items of list, each cut to limit bytes, and
// then "+K more" when K items were left out.
func CutList(list []string, n, limit int) []string { return doormanv1.CutTexts(list, n, limit) }

// ListenSocket listens on a unix socket at path that only its owner (root,
// for the agent) may connect to: the socket is made mode 0600, in a
// directory created 0700 when missing. A socket left at path by an agent
// that is gone is replaced; any other file there is an error.
func ListenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("inspect socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("inspect socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("inspect socket %s: remove the old one: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("inspect socket %s: %w", path, err)
	}
	// The umask makes the socket 0600 from its creation: no moment in
	// which others may connect. Nothing else creates files this early.
	old := syscall.Umask(0o177)
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("inspect socket %s: %w", path, err)
	}
	return lis, nil
}
