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
	// cachePeriod, for tests, replaces confirmPeriod (0: confirmPeriod).
	cachePeriod time.Duration
}

// Run runs the agent until ctx is done, then stops, leaving the kernel's
// rules in place. It returns an error when it cannot start.
//
// Start-up opens, in this order: the metrics registry, the cache file
// (its head only: what the view it holds gives the Hello), the dataplane,
// the layers around it (the drift monitor subscribes here, before the
// cached view is programmed), the agent and the stream to the control
// planes, which says its Hello while the cache's view loads; the agent
// handles no update before the view is restored and programmed. It then
// sets the conntrack sysctls and serves (see serve). Shutdown closes all
// of it in the reverse order.
func Run(ctx context.Context, cfg Config) error {
	cpService, err := checkConfig(cfg)
	if err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	p := &parts{cfg: cfg, log: log.With("node", cfg.NodeName)}
	if p.reg, p.m, err = newRegistry(); err != nil {
		return err
	}

	p.endStartGC = relaxGC()
	defer p.endStartGC()
	loadStart := time.Now()
	opening := beginCache(ctx, p.log.Named("cache"), cfg.CachePath, cfg.NodeName)
	closeCache := func() {}
	defer func() { closeCache() }()
	p.health = healthcheck.NewProxy(clock.RealClock{}, cfg.HealthTimeout)

	if p.dp, err = dataplane.Open(p.log, dataplane.Options{NetNSPath: cfg.NetNSPath, Render: cfg.Table}); err != nil {
		return fmt.Errorf("open dataplane: %w", err)
	}
	// Close releases the netlink socket; the table stays in the kernel.
	defer closeOrWarn(p.log, "close dataplane", p.dp.Close)

	layers, closeLayers, err := p.openLayers()
	if err != nil {
		return err
	}
	defer closeLayers()
	p.monitor = layers.monitor
	p.agent = agent.NewRestoring(cfg.NodeName, earlyHolding(opening, cfg.MaxCacheAge, time.Now()), layers.stack(p.dp))
	if err := p.m.Watch(p.reg, p.agent); err != nil {
		return err
	}
	streamDone, stopStream, err := p.startStream(ctx, cpService)
	if err != nil {
		return err
	}
	// After the stream stopped, before the layers close.
	defer p.saveMarkAtStop()
	// Before the cache, the layers and the dataplane close: the stream
	// drives them.
	defer stopStream()

	// From here to the agent's Open (in programCached) nothing returns:
	// the stream waits for it.
	p.cached, closeCache = loadCache(p.log, cfg, p.m, opening, loadStart)
	p.cached.trustKernel(p.dp)
	p.agent.Restore(p.cached.view, p.cached.store)
	p.programCached()
	if p.startGCBound != nil {
		defer p.startGCBound.Stop()
	}

	// After the start-up Sync: doorman's rules use conntrack, so its
	// sysctls exist by now.
	if _, err := conntrack.Apply(p.log, cfg.NetNSPath, runtime.NumCPU(), cfg.Conntrack); err != nil {
		return err
	}
	return p.serve(ctx, streamDone)
}

// checkConfig checks what Run cannot start without, and returns the
// control plane's Service (zero when none is given).
func checkConfig(cfg Config) (discovery.Service, error) {
	if cfg.NodeName == "" {
		return discovery.Service{}, errors.New("no node name")
	}
	if len(cfg.ControlPlanes) == 0 && cfg.ControlPlaneService == "" {
		return discovery.Service{}, errors.New("no control plane: give addresses or a control-plane service")
	}
	if cfg.ControlPlaneService == "" {
		return discovery.Service{}, nil
	}
	cpService, err := discovery.ParseService(cfg.ControlPlaneService)
	if err != nil {
		return discovery.Service{}, err
	}
	if cfg.Kubernetes == nil {
		return discovery.Service{}, fmt.Errorf("control-plane service %s: no Kubernetes client", cfg.ControlPlaneService)
	}
	return cpService, nil
}

// newRegistry is a Run's own Prometheus registry, with the Go runtime's
// and the process's metrics and the agent's.
func newRegistry() (*prometheus.Registry, *metrics.Metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, fmt.Errorf("register go metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, fmt.Errorf("register process metrics: %w", err)
	}
	m, err := metrics.New(reg)
	if err != nil {
		return nil, nil, err
	}
	return reg, m, nil
}

// parts is what one Run's start-up built, for the steps after it.
type parts struct {
	cfg     Config
	log     hclog.Logger
	reg     *prometheus.Registry
	m       *metrics.Metrics
	health  *healthcheck.Proxy
	cached  startView
	dp      *dataplane.Dataplane
	monitor *drift.Monitor // nil: drift is found by the periodic resync only
	agent   *agent.Agent
	// endStartGC ends the start-up's garbage collector target (relaxGC).
	endStartGC func()
	// startGCBound ends it after firstViewGCBound when nothing cached was
	// programmed and no view comes; stopped when Run returns.
	startGCBound *time.Timer
	// markMu guards savedMark (see saveMark).
	markMu    sync.Mutex
	savedMark savedMark
}

// startView is what the cache gives the start-up.
type startView struct {
	view  *state.View  // programmed at start-up (empty: nothing to program)
	cache *cache.Cache // nil: no cache
	// store is where the agent writes its view: the cache, nil when there
	// is none or it could not be cleared of a too-old view.
	store agent.Store
	// tooOld is why the cached view was dropped unprogrammed (nil: it was
	// not).
	tooOld error
}

// loadCache restores the view of the cache opening began (nil: no
// cache), dropping one older than cfg.MaxCacheAge. close closes the
// cache.
func loadCache(log hclog.Logger, cfg Config, m *metrics.Metrics, opening *cache.Opening, loadStart time.Time) (_ startView, close func()) {
	c, view := finishCache(log.Named("cache"), cfg.CachePath, opening)
	if c == nil {
		return startView{view: state.New()}, func() {}
	}
	sv := startView{cache: c, store: c}
	m.CacheLoaded(time.Since(loadStart))
	var err error
	if sv.view, sv.tooOld, err = freshView(c, view, cfg.MaxCacheAge, time.Now()); sv.tooOld != nil {
		log.Warn("cached view too old to program: waiting for a control plane", "reason", sv.tooOld)
	}
	if err != nil {
		log.Error("no cache: the too-old view could not be cleared from it", "error", err)
		sv.store = nil
	}
	return sv, func() { closeOrWarn(log, "close cache", c.Close) }
}

// earlyHolding is what the Hello says while the cache's view loads: what
// the file records of it, nothing when there is no cache or its view is
// too old to program (see freshView), and nil (the Hello waits for the
// view) when the file does not say.
func earlyHolding(opening *cache.Opening, maxAge time.Duration, now time.Time) *doormanv1.Holding {
	if opening == nil {
		return &doormanv1.Holding{}
	}
	head := opening.Head()
	switch {
	case head.Holding == nil:
		return nil
	case tooOld(head.Version, head.Confirmed, maxAge, now) != nil:
		return &doormanv1.Holding{}
	}
	return head.Holding
}

// trustKernel lets the start-up Sync skip reading the table back while
// the kernel is still as the cache's last write recorded it, and has
// every later write record the kernel's Mark with the view.
func (sv *startView) trustKernel(dp *dataplane.Dataplane) {
	if sv.store == nil {
		return
	}
	dp.Trust(dataplane.DecodeMark(sv.cache.KernelMark()))
	sv.store = &markedStore{cache: sv.cache, dp: dp}
}

// programCached programs the cached view (when there is one), ends the
// start-up's relaxed garbage collection and the agent's start-up (updates
// go on from here), then records in the cache the Mark of the kernel that
// holds the view: off the path of the first update, whose kernel commit
// does not wait for that write (and whose own write brings its mark).
func (p *parts) programCached() {
	view := p.cached.view
	if p.cached.tooOld != nil {
		p.agent.SetError(p.cached.tooOld)
	}
	start := time.Now()
	stats, warning, err := p.agent.Start()
	version, mark := view.Version(), p.dp.Mark().Encode()
	if err == nil && version > 0 {
		p.endStartGC()
	} else {
		// Nothing cached was programmed: the first full view from the
		// stream is the start-up's large heap (see firstViewGC).
		p.startGCBound = time.AfterFunc(firstViewGCBound, p.endStartGC)
	}
	switch {
	case err != nil:
		p.log.Error("cached view not programmed; the first update will program the whole view", "error", err)
	case warning != nil:
		p.log.Warn("cached view programmed without some entries", "version", version, "ops", stats.Ops, "read", stats.Read, "error", warning, "took", time.Since(start))
	case version > 0:
		p.log.Info("cached view programmed", "version", version, "entries", view.Len(), "ops", stats.Ops, "read", stats.Read, "took", time.Since(start))
	}
	p.agent.Open()
	if err == nil && version > 0 && p.cached.store != nil {
		if err := p.cached.cache.SaveKernelMark(version, mark); err != nil {
			p.log.Warn("kernel mark not saved: the next start reads the table back", "error", err)
		}
	}
}

// saveMarkAtStop records the kernel's Mark in the cache as Run ends (see
// saveMark).
func (p *parts) saveMarkAtStop() { p.saveMark("at stop") }

// saveMark records in the cache the kernel's Mark for the view the agent
// holds, while the dataplane still knows it (its own last commit, moved on
// past commits to other tables that the drift monitor saw) and it moved
// since the last write: the next start then reads the table back only for
// commits made since. Otherwise the cache keeps the Mark it has.
func (p *parts) saveMark(when string) {
	if p.cached.cache == nil || p.cached.store == nil || !p.dp.Unchanged() {
		return
	}
	version, mark := p.agent.Counters().Version, p.dp.Mark()
	if version == 0 || mark.IsZero() {
		return
	}
	p.markMu.Lock()
	defer p.markMu.Unlock()
	if p.savedMark == (savedMark{version, mark}) {
		return
	}
	if err := p.cached.cache.SaveKernelMark(version, mark.Encode()); err != nil {
		p.log.Warn("kernel mark not saved: the next start reads the table back", "when", when, "error", err)
		return
	}
	p.savedMark = savedMark{version, mark}
	p.log.Debug("kernel mark saved", "when", when, "version", version, "generation", mark.Generation)
}

// savedMark is the last Mark saveMark wrote, with its view's version.
type savedMark struct {
	version uint64
	mark    dataplane.Mark
}

// serve serves Inspect, /healthz and /livez, and /metrics, runs the drift
// monitor's loop and the cache's confirmation until the stream (started
// before: see startStream) returns, and stops them in the reverse order.
func (p *parts) serve(ctx context.Context, streamDone <-chan error) error {
	stopInspect, err := serveInspect(p.log, p.cfg, p.agent, p.cached.tooOld)
	if err != nil {
		return err
	}
	defer stopInspect()
	healthHandler, err := metrics.Health(p.reg, p.health.Handler())
	if err != nil {
		return err
	}
	stopHealth := serveHTTP(p.log, "health", p.cfg.HealthListener, healthHandler)
	defer stopHealth()
	stopMetrics := serveHTTP(p.log, "metrics", p.cfg.MetricsListener, metrics.Handler(p.reg))
	defer stopMetrics()

	stopDrift := runUntilStopped(ctx, func(ctx context.Context) {
		drift.Run(ctx, drift.Config{Agent: p.agent, Monitor: p.monitor, Period: p.cfg.ResyncPeriod, Queued: p.health.QueuedRepair, Logger: p.log.Named("drift")})
	})
	defer stopDrift()
	if p.cached.store != nil {
		period := confirmPeriod
		if p.cfg.cachePeriod > 0 {
			period = p.cfg.cachePeriod
		}
		stopConfirm := keepCacheCurrent(p.log.Named("cache"), p.cached.cache, p.agent, period, func() { p.saveMark("periodic") })
		defer stopConfirm()
	}
	return <-streamDone
}

// startStream starts the discovery of control planes and the stream to
// them, which runs until ctx is done or stop is called; done then gives
// its error.
func (p *parts) startStream(ctx context.Context, cpService discovery.Service) (done <-chan error, stop func(), err error) {
	targets, stopDiscovery, err := p.discoverTargets(ctx, cpService)
	if err != nil {
		return nil, nil, err
	}
	errs := make(chan error, 1)
	stopStream := runUntilStopped(ctx, func(ctx context.Context) { errs <- p.stream(ctx, targets) })
	return errs, func() {
		stopStream()
		stopDiscovery()
	}, nil
}

// discoverTargets returns the control planes to dial: the configured
// addresses, then (with a control-plane Service) the ready endpoints the
// discovery watcher finds, which stop stops watching.
func (p *parts) discoverTargets(ctx context.Context, cpService discovery.Service) (_ func() []string, stop func(), err error) {
	if p.cfg.ControlPlaneService == "" {
		return stream.Static(p.cfg.ControlPlanes...), func() {}, nil
	}
	w, err := discovery.New(p.log.Named("discovery"), p.cfg.Kubernetes, cpService)
	if err != nil {
		return nil, nil, err
	}
	stop = runUntilStopped(ctx, w.Run)
	return func() []string { return joinTargets(p.cfg.ControlPlanes, w.Addresses()) }, stop, nil
}

// stream runs the stream to the control planes until ctx is done.
func (p *parts) stream(ctx context.Context, targets func() []string) error {
	p.log.Info("starting", "control_planes", p.cfg.ControlPlanes, "control_plane_service", p.cfg.ControlPlaneService)
	err := stream.Run(ctx, stream.Config{
		Targets: targets,
		DialOptions: append([]grpc.DialOption{
			grpc.WithStatsHandler(p.m.StatsHandler()),
			grpc.WithStatsHandler(&receivedHandler{health: p.health}),
		}, p.cfg.DialOptions...),
		Agent:             p.agent,
		AcceptBehindAfter: p.cfg.AcceptBehindAfter,
		Observer:          observers{p.m, &healthObserver{health: p.health}, firstViewGC{end: p.endStartGC}},
		Logger:            bounded(p.log.Named("stream")),
	})
	p.log.Info("stopping; kernel rules stay in place")
	return err
}

// runUntilStopped runs run in a goroutine, with a context derived from
// ctx; stop cancels that context and waits for run to return.
func runUntilStopped(ctx context.Context, run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// closeOrWarn closes with close and logs, at Warn with msg, its error.
func closeOrWarn(log hclog.Logger, msg string, close func() error) {
	if err := close(); err != nil {
		log.Warn(msg, "error", err)
	}
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

// beginCache opens the cache file and reads its head (see
// cache.Opening); finishCache restores its view. A file another process
// holds locked (an agent that has not exited yet) is waited for a few
// times. nil: no cache.
func beginCache(ctx context.Context, log hclog.Logger, path, node string) *cache.Opening {
	if path == "" {
		log.Warn("no cache file: a restart will wait for a control plane")
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Error("no cache: cannot create its directory", "path", path, "error", err)
		return nil
	}
	for try := 1; ; try++ {
		o, err := cache.Begin(path, node)
		if err == nil {
			return o
		}
		if try == lockedTries || ctx.Err() != nil {
			log.Error("no cache: cannot open it", "path", path, "error", err)
			return nil
		}
		log.Warn("cache locked by another process; trying again", "path", path, "try", try, "error", err)
	}
}

// finishCache restores the view of the cache opening began. An unreadable
// file is set aside (the newest few copies kept). A cache that cannot be
// opened at all leaves the agent without one (it still works, from the
// stream only) rather than failing start-up on every restart.
func finishCache(log hclog.Logger, path string, opening *cache.Opening) (*cache.Cache, *state.View) {
	if opening == nil {
		return nil, nil
	}
	c, view, reset, err := opening.Finish()
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
func freshView(c *cache.Cache, view *state.View, maxAge time.Duration, now time.Time) (_ *state.View, old, err error) {
	if maxAge <= 0 || view.Version() == 0 {
		return view, nil, nil
	}
	confirmed, err := c.Confirmed()
	if err != nil {
		return state.New(), fmt.Errorf("cached view (version %d) not programmed: its age is unknown: %w", view.Version(), err), err
	}
	if old = tooOld(view.Version(), confirmed, maxAge, now); old == nil {
		return view, nil, nil
	}
	return state.New(), old, c.Clear()
}

// tooOld says why a cached view of version, which a control plane last
// confirmed at confirmed (zero: the file does not say), is too old to
// program at now; nil when it is not (or maxAge is 0: any age).
func tooOld(version uint64, confirmed time.Time, maxAge time.Duration, now time.Time) error {
	if maxAge <= 0 || version == 0 {
		return nil
	}
	switch age := now.Sub(confirmed); {
	case confirmed.IsZero():
		return fmt.Errorf("cached view (version %d) not programmed: the cache does not say when a control plane last confirmed it; waiting for a control plane", version)
	case age > maxAge:
		return fmt.Errorf("cached view (version %d) not programmed: a control plane last confirmed it %s ago (%s), over --max-cache-age %s; waiting for a control plane",
			version, age.Round(time.Second), confirmed.UTC().Format(time.RFC3339), maxAge)
	}
	return nil
}

// confirmPeriod is how often the cache records that a connected control
// plane still confirms the view, when no update does.
const confirmPeriod = time.Minute

// keepCacheCurrent records in the cache, every period, the kernel's Mark
// (saveMark: the commits to other tables since the last write are then
// covered even if the agent is killed) and, while a stream is open, that a
// control plane confirms the view (the control plane sends every change as
// it happens, so an open stream with nothing new says the view is
// current).
func keepCacheCurrent(log hclog.Logger, c *cache.Cache, a *agent.Agent, period time.Duration, saveMark func()) (stop func()) {
	t := time.NewTicker(period)
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				saveMark()
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
		closeOrWarn(log, "close inspect dataplane", reader.Close)
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

func (s *markedStore) SetHolding(h *doormanv1.Holding) { s.cache.SetHolding(h) }
