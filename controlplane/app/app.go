package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection"
	"k8s.io/client-go/kubernetes"

	"github.com/doorman-proxy/doorman/controlplane/internal/auth"
	"github.com/doorman-proxy/doorman/controlplane/internal/certs"
	"github.com/doorman-proxy/doorman/controlplane/internal/health"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/metrics"
	"github.com/doorman-proxy/doorman/controlplane/internal/model"
	"github.com/doorman-proxy/doorman/controlplane/internal/server"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch"
	"github.com/doorman-proxy/doorman/internal/config"
)

// Config configures the control plane.
type Config struct {
	Client       kubernetes.Interface
	GRPCListener net.Listener
	HTTPListener net.Listener // /healthz, /readyz, /metrics; nil = none
	// Profiling serves Go's profiles under /debug/pprof/ on HTTPListener
	// (kube-proxy's --profiling). Off by default: a profile shows the
	// process's memory to anyone who reaches the port.
	Profiling         bool
	ServerOptions     []grpc.ServerOption // e.g. TLS credentials
	NodePortAddresses []string            // "primary" or CIDRs; empty = every InternalIP/ExternalIP of the Node
	VersionSeed       uint64
	// LogLimit is how many change records the views keep (0: the
	// default, view.DefaultLogLimit).
	LogLimit int
	// EndpointsByNode sends the ports of Services with a Local traffic
	// policy by node, and serves agents of version.ByNodeProtocol and
	// later only (see hub.Config).
	EndpointsByNode bool
	Logger          hclog.Logger
	// Limits bound connections, streams and their age (zero fields: the
	// defaults).
	Limits server.Limits
	// Events, when set, posts Warning Events on Services that lose an
	// address to another or are refused (see package events).
	Events hub.Events
	// StaleAfter: /readyz fails once a watched resource has had no event
	// or bookmark for longer (0: DefaultStaleAfter; negative: never).
	StaleAfter time.Duration
	// Security, when set, serves gRPC over TLS with a certificate issued
	// from the CA the control plane keeps in the cluster, and admits only
	// authenticated agents (each as its own node) and authorised Inspect
	// callers. nil = plaintext, no checks (local development only).
	Security *Security
	// Configuration is the control plane's effective configuration, shown
	// by Inspect's GetConfig (nil: GetConfig answers Unavailable).
	Configuration *config.Effective
}

// Security configures TLS and the callers' authentication.
type Security struct {
	// Namespace holds the CA Secret and ConfigMap and the agents'
	// ServiceAccount.
	Namespace string
	// SecretName and ConfigMapName default to doorman-controlplane-tls and
	// doorman-ca.
	SecretName, ConfigMapName string
	// DNSNames and IPs are the serving certificate's SANs (the Service's
	// names, the Pod IP, extra names).
	DNSNames []string
	IPs      []net.IP
	// AgentServiceAccount is the agents' ServiceAccount in Namespace.
	AgentServiceAccount string
	// Audiences the callers' tokens must be bound to (default "doorman").
	Audiences []string
	// AuthLimits bound the token reviews and their caches (zero fields:
	// the defaults).
	AuthLimits auth.Limits
	// ReviewClient sends the TokenReviews and SubjectAccessReviews
	// (default: Client). AuthLimits bound its rate; its own client-side
	// limit should be off.
	ReviewClient kubernetes.Interface
	// LocalTokenVerification verifies agents' tokens in the control
	// plane, with the API server's service-account keys (read from its
	// issuer discovery through ReviewClient) and the agents' Pods
	// (watched in Namespace), instead of a TokenReview each;
	// TokenReviews remain for what it cannot verify.
	LocalTokenVerification bool
}

// DefaultStaleAfter is StaleAfter's default: the API server sends a
// watch bookmark about once a minute even when nothing changes (the first
// of a new watch after up to two), so five minutes of silence is a watch
// that stalled, not a quiet cluster.
const DefaultStaleAfter = 5 * time.Minute

// shutdownGrace is how long in-flight RPCs get to finish at shutdown.
const shutdownGrace = 5 * time.Second

// Run serves until ctx is done, then shuts down and returns. gRPC
// connections are accepted only once the informers have synced.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Client == nil || cfg.GRPCListener == nil {
		return errors.New("control plane: a client and a gRPC listener are required")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	nodePorts, err := model.ParseNodePortAddresses(cfg.NodePortAddresses)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	fresh := watch.NewFreshness(nil, log.Named("watch"))
	h := hub.New(hub.Config{NodePortAddresses: nodePorts, VersionSeed: cfg.VersionSeed, LogLimit: cfg.LogLimit, Logger: log.Named("hub"), Freshness: fresh.Marker, Events: cfg.Events, Load: true, EndpointsByNode: cfg.EndpointsByNode})
	m, err := metrics.New(h)
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	// The informers start first: the TLS and authentication set-up below
	// must not delay them (readiness after a restart waits for them).
	synced := make(chan struct{})
	go func() {
		if err := watch.Start(ctx, cfg.Client, m.Sink(h), fresh, log.Named("watch")); err != nil {
			if ctx.Err() == nil {
				errc <- err
			}
			return
		}
		h.MarkReady()
		close(synced)
		// The initial lists leave as much garbage as the state they
		// built; give it back now rather than keep it for the next
		// collections to reuse.
		debug.FreeOSMemory()
	}()

	gs, err := newGRPCServer(ctx, cfg, h, m, log)
	if err != nil {
		return err
	}
	go serveGRPC(ctx, gs, cfg, synced, errc, log)
	hs := serveHTTP(cfg, h, m, fresh, errc, log)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		log.Error("control plane failed", "error", runErr)
	}
	log.Info("shutting down")
	cancel()
	h.Close()
	shutdown(gs, hs)
	return runErr
}

// newGRPCServer builds the gRPC server with both services, reflection,
// the limits, the metrics' stats handler and, when secured, TLS and the
// callers' checks (whose set-up runs until ctx ends).
func newGRPCServer(ctx context.Context, cfg Config, h *hub.Hub, m *metrics.Metrics, log hclog.Logger) (*grpc.Server, error) {
	opts := append(server.Options(), cfg.Limits.ServerOptions()...)
	opts = append(opts, grpc.StatsHandler(m.StatsHandler()))
	opts = append(opts, cfg.ServerOptions...)
	if cfg.Security != nil {
		secure, err := security(ctx, cfg.Client, *cfg.Security, log)
		if err != nil {
			return nil, fmt.Errorf("control plane: %w", err)
		}
		opts = append(opts, secure...)
	}
	gs := grpc.NewServer(opts...)
	server.Register(gs, h, log.Named("server"), server.WithConfiguration(cfg.Configuration), server.WithSent(m.Sent))
	reflection.Register(gs)
	return gs, nil
}

// serveGRPC accepts connections once the informers have synced: agents
// that connect before wait in the listener's backlog instead of having
// their handshakes and admissions (TLS, token signatures) take the CPU the
// informers' first lists need, and a replica that restarts is ready as
// soon as it has the cluster's state.
func serveGRPC(ctx context.Context, gs *grpc.Server, cfg Config, synced <-chan struct{}, errc chan<- error, log hclog.Logger) {
	select {
	case <-synced:
	case <-ctx.Done():
		_ = cfg.GRPCListener.Close()
		return
	}
	log.Info("serving grpc", "address", cfg.GRPCListener.Addr().String())
	if err := gs.Serve(cfg.Limits.Listener(cfg.GRPCListener)); err != nil {
		errc <- fmt.Errorf("serve grpc: %w", err)
	}
}

// serveHTTP serves health and metrics when an HTTP listener is given;
// nil otherwise.
func serveHTTP(cfg Config, h *hub.Hub, m *metrics.Metrics, fresh *watch.Freshness, errc chan<- error, log hclog.Logger) *http.Server {
	if cfg.HTTPListener == nil {
		return nil
	}
	mux := http.NewServeMux()
	staleAfter := cfg.StaleAfter
	if staleAfter == 0 {
		staleAfter = DefaultStaleAfter
	}
	mux.Handle("/", health.Handler(health.Synced(h.Ready), func() error { return fresh.Check(staleAfter) }))
	mux.Handle("GET /metrics", m.Handler())
	if cfg.Profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		log.Info("serving http", "address", cfg.HTTPListener.Addr().String())
		if err := hs.Serve(cfg.HTTPListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve http: %w", err)
		}
	}()
	return hs
}

// shutdown gives in-flight RPCs and requests shutdownGrace to finish.
func shutdown(gs *grpc.Server, hs *http.Server) {
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
}

// security starts the certificate manager and returns the server options
// for TLS and the callers' checks.
func security(ctx context.Context, client kubernetes.Interface, sec Security, log hclog.Logger) ([]grpc.ServerOption, error) {
	if sec.Namespace == "" || sec.AgentServiceAccount == "" {
		return nil, errors.New("security: a namespace and the agents' service account are required")
	}
	reviews := sec.ReviewClient
	if reviews == nil {
		reviews = client
	}
	// The TLS objects and the callers' checks use the reviews' client:
	// the same credentials and CA, without a client-side limit to share
	// with the informers' start-up lists.
	cm, err := certs.New(certs.Config{
		Client: reviews, Namespace: sec.Namespace,
		SecretName: sec.SecretName, ConfigMapName: sec.ConfigMapName,
		DNSNames: sec.DNSNames, IPs: sec.IPs,
		Logger: log.Named("certs"),
	})
	if err != nil {
		return nil, err
	}
	if err := cm.Start(ctx); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	var local *auth.LocalConfig
	if sec.LocalTokenVerification {
		local = &auth.LocalConfig{Keys: reviews.Discovery().RESTClient(), Pods: reviews}
	}
	a, err := auth.New(auth.Config{
		Client:    reviews,
		Audiences: sec.Audiences,
		AgentUser: auth.ServiceAccountUser(sec.Namespace, sec.AgentServiceAccount),
		Limits:    sec.AuthLimits,
		Local:     local,
		Logger:    log.Named("auth"),
	})
	if err != nil {
		return nil, err
	}
	a.Start(ctx)
	log.Info("grpc secured", "policy", a.String())
	return append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(cm.TLSConfig()))}, a.ServerOptions()...), nil
}
