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
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"k8s.io/utils/clock"

	"github.com/doorman-proxy/doorman/internal/config"
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
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	"github.com/doorman-proxy/doorman/nodeagent/internal/stream"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
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
	CachePath           string // bbolt file; "" = no cache
	// MaxCacheAge is the oldest cached view programmed at start-up without
	// a control plane, counted from when a control plane last confirmed
	// it; an older one is dropped and the agent waits for a control plane.
	// 0 = any age.
	MaxCacheAge time.Duration
	// Configuration is the agent's effective configuration, shown by
	// Inspect's GetConfig (nil: GetConfig answers Unavailable).
	Configuration *config.Effective
	// InspectListeners serve AgentInspectService + reflection (a unix
	// socket, a TCP address); none = no Inspect.
	InspectListeners []net.Listener
	HealthListener   net.Listener // /healthz and /livez; nil = none
	// HealthTimeout is how long an update received (or a drift repair)
	// may wait for the kernel before /healthz and /livez answer 503; 0 =
	// healthcheck.DefaultTimeout.
	HealthTimeout   time.Duration
	MetricsListener net.Listener // /metrics (Prometheus); nil = none
	NetNSPath       string       // passed to dataplane.Options, the drift monitor, conntrack and health checks
	// Table shapes the static part of the nftables table (local traffic
	// detection, ClusterIP masquerade): dataplane.Options.Render.
	Table render.Options
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
	// AcceptBehindAfter is stream.Config.AcceptBehindAfter (0: the
	// default).
	AcceptBehindAfter time.Duration

	// wrapKernel, for tests, wraps the kernel the agent drives.
	wrapKernel func(agent.Kernel) agent.Kernel
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

	endStartGC := relaxGC()
	defer endStartGC()
	var view *state.View
	var store agent.Store
	var c *cache.Cache
	var tooOld error
	loadStart := time.Now()
	if c, view = openCache(ctx, log.Named("cache"), cfg.CachePath, cfg.NodeName); c != nil {
		defer func() {
			if err := c.Close(); err != nil {
				log.Warn("close cache", "error", err)
			}
		}()
		store = c
		m.CacheLoaded(time.Since(loadStart))
		var err error
		if view, tooOld, err = freshView(c, view, cfg.MaxCacheAge, time.Now()); tooOld != nil {
			log.Warn("cached view too old to program: waiting for a control plane", "reason", tooOld)
		}
		if err != nil {
			log.Error("no cache: the too-old view could not be cleared from it", "error", err)
			store = nil
		}
	} else {
		view = state.New()
	}
	health := healthcheck.NewProxy(clock.RealClock{}, cfg.HealthTimeout)

	dp, err := dataplane.Open(log, dataplane.Options{NetNSPath: cfg.NetNSPath, Render: cfg.Table})
	if err != nil {
		return fmt.Errorf("open dataplane: %w", err)
	}
	defer func() {
		// Close releases the netlink socket; the table stays in the kernel.
		if err := dp.Close(); err != nil {
			log.Warn("close dataplane", "error", err)
		}
	}()

	if store != nil {
		// The start-up Sync skips reading the table back while the kernel
		// is still as the cache's last write recorded it.
		dp.Trust(dataplane.DecodeMark(c.KernelMark()))
		store = &markedStore{cache: c, dp: dp}
	}

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
	hcPorts := healthcheck.New(log, healthcheck.Options{NetNSPath: cfg.NetNSPath, Address: cfg.HealthCheckAddress})
	defer func() { _ = hcPorts.Close() }()
	kernel = followup.Wrap(kernel, followup.Config{Cleaner: cleaner, Health: hcPorts, Observer: m, Logger: log.Named("followup")})
	rules, err := metrics.NewRules(reg)
	if err != nil {
		return err
	}
	kernel = rules.Kernel(kernel)
	kernel = &healthKernel{Kernel: kernel, health: health}
	if cfg.wrapKernel != nil {
		kernel = cfg.wrapKernel(kernel)
	}

	a := agent.New(cfg.NodeName, view, kernel, store)
	if err := m.Watch(reg, a); err != nil {
		return err
	}
	if tooOld != nil {
		a.SetError(tooOld)
	}
	start := time.Now()
	stats, warning, err := a.Start()
	endStartGC()
	switch {
	case err != nil:
		log.Error("cached view not programmed; the first update will program the whole view", "error", err)
	case warning != nil:
		log.Warn("cached view programmed without some entries", "version", view.Version(), "ops", stats.Ops, "read", stats.Read, "error", warning, "took", time.Since(start))
	case view.Version() > 0:
		log.Info("cached view programmed", "version", view.Version(), "entries", view.Len(), "ops", stats.Ops, "read", stats.Read, "took", time.Since(start))
	}
	if err == nil && view.Version() > 0 && store != nil {
		if err := c.SaveKernelMark(dp.Mark().Encode()); err != nil {
			log.Warn("kernel mark not saved: the next start reads the table back", "error", err)
		}
	}

	// After the start-up Sync: doorman's rules use conntrack, so its
	// sysctls exist by now.
	if _, err := conntrack.Apply(log, cfg.NetNSPath, runtime.NumCPU(), cfg.Conntrack); err != nil {
		return err
	}

	stopInspect, err := serveInspect(log, cfg, a, tooOld)
	if err != nil {
		return err
	}
	defer stopInspect()
	healthHandler, err := metrics.Health(reg, health.Handler())
	if err != nil {
		return err
	}
	stopHealth := serveHTTP(log, "health", cfg.HealthListener, healthHandler)
	defer stopHealth()
	stopMetrics := serveHTTP(log, "metrics", cfg.MetricsListener, metrics.Handler(reg))
	defer stopMetrics()

	driftCtx, stopDrift := context.WithCancel(ctx)
	driftDone := make(chan struct{})
	go func() {
		defer close(driftDone)
		drift.Run(driftCtx, drift.Config{Agent: a, Monitor: monitor, Period: cfg.ResyncPeriod, Queued: health.QueuedRepair, Logger: log.Named("drift")})
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

	if store != nil {
		stopConfirm := confirmWhileConnected(log.Named("cache"), c, a, confirmPeriod)
		defer stopConfirm()
	}

	log.Info("starting", "control_planes", cfg.ControlPlanes, "control_plane_service", cfg.ControlPlaneService)
	err = stream.Run(ctx, stream.Config{
		Targets: targets,
		DialOptions: append([]grpc.DialOption{
			grpc.WithStatsHandler(m.StatsHandler()),
			grpc.WithStatsHandler(&receivedHandler{health: health}),
		}, cfg.DialOptions...),
		Agent:             a,
		AcceptBehindAfter: cfg.AcceptBehindAfter,
		Observer:          observers{m, &healthObserver{health: health}},
		Logger:            bounded(log.Named("stream")),
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
// set aside (the newest few copies kept); a file another process holds
// locked (an agent that has not exited yet) is waited for a few times.
// A cache that cannot be opened at all leaves the agent without one (it
// still works, from the stream only) rather than failing start-up on
// every restart.
func openCache(ctx context.Context, log hclog.Logger, path, node string) (*cache.Cache, *state.View) {
	if path == "" {
		log.Warn("no cache file: a restart will wait for a control plane")
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Error("no cache: cannot create its directory", "path", path, "error", err)
		return nil, nil
	}
	var c *cache.Cache
	var view *state.View
	var reset *cache.Reset
	var err error
	for try := 1; ; try++ {
		c, view, reset, err = cache.OpenView(path, node)
		if !errors.Is(err, cache.ErrLocked) || try == lockedTries || ctx.Err() != nil {
			break
		}
		log.Warn("cache locked by another process; trying again", "path", path, "try", try, "error", err)
	}
	if reset != nil {
		log.Error("cache unreadable, set aside; starting empty", "path", path, "aside", reset.Aside, "error", reset.Cause)
		if len(reset.Removed) > 0 {
			log.Info("older set-aside cache files removed", "removed", reset.Removed, "kept", cache.KeptAside)
		}
		if reset.PruneErr != nil {
			log.Warn("older set-aside cache files not removed", "error", reset.PruneErr)
		}
	}
	if err != nil {
		log.Error("no cache: cannot open it", "path", path, "error", err)
		return nil, nil
	}
	log.Info("cache loaded", "path", path, "version", view.Version(), "entries", view.Len())
	return c, view
}

// lockedTries is how many times a locked cache is waited for (each open
// waits several seconds for the lock).
const lockedTries = 3

// freshView returns view when a control plane confirmed it at most maxAge
// before now. An older view (or one whose age the file does not record)
// may send traffic to Pod IPs that belong to someone else by now: the
// cache is cleared, an empty view returned with the reason (tooOld), and
// the agent programs nothing until a control plane answers. err: the
// cache could not be read or cleared, and must not be written to.
func freshView(c *cache.Cache, view *state.View, maxAge time.Duration, now time.Time) (_ *state.View, tooOld, err error) {
	if maxAge <= 0 || view.Version() == 0 {
		return view, nil, nil
	}
	confirmed, err := c.Confirmed()
	if err != nil {
		return state.New(), fmt.Errorf("cached view (version %d) not programmed: its age is unknown: %w", view.Version(), err), err
	}
	switch age := now.Sub(confirmed); {
	case confirmed.IsZero():
		tooOld = fmt.Errorf("cached view (version %d) not programmed: the cache does not say when a control plane last confirmed it; waiting for a control plane", view.Version())
	case age > maxAge:
		tooOld = fmt.Errorf("cached view (version %d) not programmed: a control plane last confirmed it %s ago (%s), over --max-cache-age %s; waiting for a control plane",
			view.Version(), age.Round(time.Second), confirmed.UTC().Format(time.RFC3339), maxAge)
	default:
		return view, nil, nil
	}
	return state.New(), tooOld, c.Clear()
}

// confirmPeriod is how often the cache records that a connected control
// plane still confirms the view, when no update does.
const confirmPeriod = time.Minute

// confirmWhileConnected records in the cache, every period while a stream
// is open, that a control plane confirms the view (the control plane
// sends every change as it happens, so an open stream with nothing new
// says the view is current).
func confirmWhileConnected(log hclog.Logger, c *cache.Cache, a *agent.Agent, period time.Duration) (stop func()) {
	t := time.NewTicker(period)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				if !a.Counters().Connected {
					continue
				}
				if err := c.Confirm(); err != nil {
					log.Warn("cache not confirmed", "error", err)
				}
			}
		}
	}()
	return func() {
		t.Stop()
		close(quit)
		<-done
	}
}

// serveInspect serves Inspect on every listener of cfg. Kernel reads go
// through a dataplane of their own (its own netlink connection and lock),
// so that GetKernel, a full dump, never waits for or holds up an update.
func serveInspect(log hclog.Logger, cfg Config, a *agent.Agent, waiting error) (stop func(), err error) {
	if len(cfg.InspectListeners) == 0 {
		return func() {}, nil
	}
	reader, err := dataplane.Open(log.Named("inspect"), dataplane.Options{NetNSPath: cfg.NetNSPath})
	if err != nil {
		return nil, fmt.Errorf("open dataplane for inspect: %w", err)
	}
	s := inspect.New(a, reader)
	s.SetConfig(cfg.Configuration)
	if waiting != nil {
		s.Waiting(waiting.Error())
	}
	g := grpc.NewServer()
	s.Register(g)
	var wg sync.WaitGroup
	for _, lis := range cfg.InspectListeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Info("inspect listening", "address", lis.Addr().String())
			if err := g.Serve(lis); err != nil {
				log.Error("inspect server", "address", lis.Addr().String(), "error", err)
			}
		}()
	}
	return func() {
		g.Stop()
		wg.Wait()
		if err := reader.Close(); err != nil {
			log.Warn("close inspect dataplane", "error", err)
		}
	}, nil
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

// markedStore is the cache that writes, with each view, the dataplane's
// Mark of what the kernel holds after its last own commit: the next start
// then needs not read the table back while nothing changed.
type markedStore struct {
	cache *cache.Cache
	dp    *dataplane.Dataplane
}

func (s *markedStore) Save(version uint64, changes []state.Change) error {
	s.cache.SetKernelMark(s.dp.Mark().Encode())
	return s.cache.Save(version, changes)
}

func (s *markedStore) Replace(version uint64, view map[string]*doormanv1.Entry) error {
	s.cache.SetKernelMark(s.dp.Mark().Encode())
	return s.cache.Replace(version, view)
}

func (s *markedStore) Freshness() map[string]uint64 { return s.cache.Freshness() }

func (s *markedStore) SetFreshness(m map[string]uint64) { s.cache.SetFreshness(m) }
