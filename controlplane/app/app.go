package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"k8s.io/client-go/kubernetes"

	"github.com/doorman-proxy/doorman/controlplane/internal/health"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/server"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch"
)

// Config configures the control plane.
type Config struct {
	Client            kubernetes.Interface
	GRPCListener      net.Listener
	HTTPListener      net.Listener        // /healthz, /readyz; nil = none
	ServerOptions     []grpc.ServerOption // e.g. TLS credentials
	NodePortAddresses []string            // CIDRs; empty = every InternalIP/ExternalIP of the Node
	VersionSeed       uint64
	Logger            hclog.Logger
}

// shutdownGrace is how long in-flight RPCs get to finish at shutdown.
const shutdownGrace = 5 * time.Second

// Run serves until ctx is done, then shuts down and returns. Agents are
// served only once the informers have synced.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil || cfg.GRPCListener == nil {
		return errors.New("control plane: a client and a gRPC listener are required")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	cidrs, err := model.ParseCIDRs(cfg.NodePortAddresses)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	h := hub.New(hub.Config{NodePortCIDRs: cidrs, VersionSeed: cfg.VersionSeed, Logger: log.Named("hub")})

	opts := append([]grpc.ServerOption{
		server.Codec(),
		// Agents ping every 30 s, also with no stream open, to notice a
		// dead control plane; allow that rather than answer with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
	}, cfg.ServerOptions...)
	gs := grpc.NewServer(opts...)
	server.Register(gs, h, log.Named("server"))
	reflection.Register(gs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	go func() {
		log.Info("serving grpc", "address", cfg.GRPCListener.Addr().String())
		if err := gs.Serve(cfg.GRPCListener); err != nil {
			errc <- fmt.Errorf("serve grpc: %w", err)
		}
	}()
	var hs *http.Server
	if cfg.HTTPListener != nil {
		hs = &http.Server{Handler: health.Handler(h.Ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			log.Info("serving http", "address", cfg.HTTPListener.Addr().String())
			if err := hs.Serve(cfg.HTTPListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve http: %w", err)
			}
		}()
	}
	go func() {
		if err := watch.Start(ctx, cfg.Client, h, log.Named("watch")); err != nil {
			if ctx.Err() == nil {
				errc <- err
			}
			return
		}
		h.MarkReady()
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("control plane failed", "error", runErr)
	}
	log.Info("shutting down")
	cancel()
	h.Close()
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(shutdownGrace):
		gs.Stop()
	}
	if hs != nil {
		sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer scancel()
		_ = hs.Shutdown(sctx)
	}
	return runErr
}
