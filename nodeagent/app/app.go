package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/cache"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/discovery"
	"github.com/doorman-proxy/doorman/nodeagent/internal/drift"
	"github.com/doorman-proxy/doorman/nodeagent/internal/followup"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	"github.com/doorman-proxy/doorman/nodeagent/internal/inspect"
	"github.com/doorman-proxy/doorman/nodeagent/internal/kube"
	"github.com/doorman-proxy/doorman/nodeagent/internal/metrics"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	"github.com/doorman-proxy/doorman/nodeagent/internal/stream"
)

// Config configures Run.
type Config struct {
	NodeName      string
	ControlPlanes []string // host:port, tried in turn (before any discovered ones)
	// ControlPlaneService, "NAMESPACE/NAME:PORTNAME", is the control
	// plane's Service: its ready endpoints, watched through Kubernetes
	// (EndpointSlices only), are dialled in turn as the list changes. ""
	// = none; ControlPlanes, this or both must be given.
	ControlPlaneService string
	Kubernetes          kube.Interface // for ControlPlaneService
	DialOptions         []grpc.DialOption
	CachePath           string       // bbolt file; "" = no cache
	InspectListener     net.Listener // AgentInspectService + reflection; nil = none
	HealthListener      net.Listener // /healthz; nil = none
	MetricsListener     net.Listener // /metrics (Prometheus); nil = none
	NetNSPath           string       // passed to dataplane.Options, the drift monitor, conntrack and health checks
	// HealthCheckAddress is the IP the healthCheckNodePort servers listen
	// on (in the NetNSPath namespace); "" = every address.
	HealthCheckAddress string
	// ResyncPeriod is the backstop full reconcile of the kernel, on top of
	// the event monitor; 0 disables it.
	ResyncPeriod time.Duration
	// Conntrack are the conntrack sysctls set once at start (in
	// NetNSPath), as kube-proxy does; the zero value sets none.
	Conntrack conntrack.Settings
	Logger    hclog.Logger
}

// Run runs the agent until ctx is done, then stops, leaving the kernel's
// rules in place. It returns an error when it cannot start.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.NodeName == "" {
		return errors.New("no node name")
	}
	if len(cfg.ControlPlanes) == 0 && cfg.ControlPlaneService == "" {
		return errors.New("no control plane: give addresses or a control-plane service")
	}
	var cpService discovery.Service
	if cfg.ControlPlaneService != "" {
		var err error
		if cpService, err = discovery.ParseService(cfg.ControlPlaneService); err != nil {
			return err
		}
		if cfg.Kubernetes == nil {
			return fmt.Errorf("control-plane service %s: no Kubernetes client", cfg.ControlPlaneService)
		}
	}
	log = log.With("node", cfg.NodeName)

	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("register go metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return fmt.Errorf("register process metrics: %w", err)
	}
	m, err := metrics.New(reg)
	if err != nil {
		return err
	}

	view := state.New()
	var store agent.Store
	loadStart := time.Now()
	if c, v := openCache(log.Named("cache"), cfg.CachePath, cfg.NodeName); c != nil {
		defer func() {
			if err := c.Close(); err != nil {
				log.Warn("close cache", "error", err)
			}
		}()
		store, view = c, v
		m.CacheLoaded(time.Since(loadStart))
	}

	dp, err := dataplane.Open(log, dataplane.Options{NetNSPath: cfg.NetNSPath})
	if err != nil {
		return fmt.Errorf("open dataplane: %w", err)
	}
	defer func() {
		// Close releases the netlink socket; the table stays in the kernel.
		if err := dp.Close(); err != nil {
			log.Warn("close dataplane", "error", err)
		}
	}()

	// The monitor subscribes before the cached view is programmed, so no
	// foreign change after start-up goes unseen.
	kernel := m.Kernel(dp)
	monitor, err := drift.Open(log.Named("drift"), cfg.NetNSPath)
	if err != nil {
		log.Error("no nftables event monitor: drift is found by the periodic resync only", "error", err, "period", cfg.ResyncPeriod)
		monitor = nil
	} else {
		defer func() {
			if err := monitor.Close(); err != nil {
				log.Warn("close drift monitor", "error", err)
			}
		}()
		kernel = monitor.Kernel(kernel)
	}

	// After every committed transaction (the start-up Sync from the cache
	// included): stale UDP conntrack entries go, health check ports follow
	// the view.
	var cleaner followup.Cleaner
	if c, err := conntrack.New(log, conntrack.Options{NetNSPath: cfg.NetNSPath}); err != nil {
		log.Error("no conntrack clean-up: stale UDP entries are left to time out", "error", err)
	} else {
		defer func() {
			if err := c.Close(); err != nil {
				log.Warn("close conntrack", "error", err)
			}
		}()
		cleaner = c
	}
	health := healthcheck.New(log, healthcheck.Options{NetNSPath: cfg.NetNSPath, Address: cfg.HealthCheckAddress})
	defer func() { _ = health.Close() }()
	kernel = followup.Wrap(kernel, followup.Config{Cleaner: cleaner, Health: health, Observer: m, Logger: log.Named("followup")})

	a := agent.New(cfg.NodeName, view, kernel, store)
	if err := m.Watch(reg, a); err != nil {
		return err
	}
	start := time.Now()
	stats, warning, err := a.Start()
	switch {
	case err != nil:
		log.Error("cached view not programmed; the first update will program the whole view", "error", err)
	case warning != nil:
		log.Warn("cached view programmed without some entries", "version", view.Version(), "ops", stats.Ops, "error", warning, "took", time.Since(start))
	case view.Version() > 0:
		log.Info("cached view programmed", "version", view.Version(), "entries", view.Len(), "ops", stats.Ops, "took", time.Since(start))
	}

	// After the start-up Sync: doorman's rules use conntrack, so its
	// sysctls exist by now.
	if _, err := conntrack.Apply(log, cfg.NetNSPath, runtime.NumCPU(), cfg.Conntrack); err != nil {
		return err
	}

	stopInspect := serveInspect(log, cfg.InspectListener, inspect.New(a, dp))
	defer stopInspect()
	stopHealth := serveHTTP(log, "health", cfg.HealthListener, inspect.Health(a, m.LastUpdated, time.Now))
	defer stopHealth()
	stopMetrics := serveHTTP(log, "metrics", cfg.MetricsListener, metrics.Handler(reg))
	defer stopMetrics()

	driftCtx, stopDrift := context.WithCancel(ctx)
	driftDone := make(chan struct{})
	go func() {
		defer close(driftDone)
		drift.Run(driftCtx, drift.Config{Agent: a, Monitor: monitor, Period: cfg.ResyncPeriod, Logger: log.Named("drift")})
	}()
	defer func() {
		stopDrift()
		<-driftDone
	}()

	targets := stream.Static(cfg.ControlPlanes...)
	if cfg.ControlPlaneService != "" {
		w, err := discovery.New(log.Named("discovery"), cfg.Kubernetes, cpService)
		if err != nil {
			return err
		}
		discoveryCtx, stopDiscovery := context.WithCancel(ctx)
		discoveryDone := make(chan struct{})
		go func() {
			defer close(discoveryDone)
			w.Run(discoveryCtx)
		}()
		defer func() {
			stopDiscovery()
			<-discoveryDone
		}()
		targets = func() []string { return joinTargets(cfg.ControlPlanes, w.Addresses()) }
	}

	log.Info("starting", "control_planes", cfg.ControlPlanes, "control_plane_service", cfg.ControlPlaneService)
	err = stream.Run(ctx, stream.Config{
		Targets:     targets,
		DialOptions: append([]grpc.DialOption{grpc.WithStatsHandler(m.StatsHandler())}, cfg.DialOptions...),
		Agent:       a,
		Observer:    m,
		Logger:      log.Named("stream"),
	})
	log.Info("stopping; kernel rules stay in place")
	return err
}

// joinTargets is the static addresses, then the discovered ones not
// among them.
func joinTargets(static, discovered []string) []string {
	out := append(make([]string, 0, len(static)+len(discovered)), static...)
	for _, d := range discovered {
		if !slices.Contains(static, d) {
			out = append(out, d)
		}
	}
	return out
}

// openCache opens the cache and restores its view. An unreadable file is
// set aside; a cache that cannot be opened at all leaves the agent without
// one (it still works, from the stream only) rather than failing start-up
// on every restart.
func openCache(log hclog.Logger, path, node string) (*cache.Cache, *state.View) {
	if path == "" {
		log.Warn("no cache file: a restart will wait for a control plane")
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Error("no cache: cannot create its directory", "path", path, "error", err)
		return nil, nil
	}
	c, view, reset, err := cache.OpenView(path, node)
	if reset != nil {
		log.Error("cache unreadable, set aside; starting empty", "path", path, "aside", reset.Aside, "error", reset.Cause)
	}
	if err != nil {
		log.Error("no cache: cannot open it", "path", path, "error", err)
		return nil, nil
	}
	log.Info("cache loaded", "path", path, "version", view.Version(), "entries", view.Len())
	return c, view
}

func serveInspect(log hclog.Logger, lis net.Listener, s *inspect.Server) (stop func()) {
	if lis == nil {
		return func() {}
	}
	g := grpc.NewServer()
	s.Register(g)
	done := make(chan struct{})
	go func() {
		defer close(done)
		log.Info("inspect listening", "address", lis.Addr().String())
		if err := g.Serve(lis); err != nil {
			log.Error("inspect server", "error", err)
		}
	}()
	return func() {
		g.Stop()
		<-done
	}
}

func serveHTTP(log hclog.Logger, name string, lis net.Listener, h http.Handler) (stop func()) {
	if lis == nil {
		return func() {}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		log.Info("http listening", "serves", name, "address", lis.Addr().String())
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "serves", name, "error", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
}
