package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/stats"

	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Source is the agent's running totals (*agent.Agent).
type Source interface {
	Counters() agent.Counters
}

// Metrics holds the agent's series.
type Metrics struct {
	now   func() time.Time
	start time.Time

	syncDuration prometheus.Histogram
	programming  prometheus.Histogram
	receiveDelay prometheus.Histogram
	lastSync     prometheus.Gauge
	ops          prometheus.Histogram
	cacheLoad    prometheus.Gauge
	streamBytes  prometheus.Counter
	cleanErrors  prometheus.Counter
	healthErrors prometheus.Counter
	syncReads    *prometheus.CounterVec
	syncSteps    *prometheus.HistogramVec

	lastCommit atomic.Int64 // Unix nanoseconds of the last committed transaction
}

// networkProgrammingBuckets are kube-proxy's: 0.25 s and 0.5 s, then every
// second to 59 s, every 5 s to 115 s, every 30 s to 5 min.
func networkProgrammingBuckets() []float64 {
	b := prometheus.LinearBuckets(0.25, 0.25, 2)
	b = append(b, prometheus.LinearBuckets(1, 1, 59)...)
	b = append(b, prometheus.LinearBuckets(60, 5, 12)...)
	return append(b, prometheus.LinearBuckets(120, 30, 7)...)
}

// New creates the series and registers them with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{now: time.Now}
	m.start = m.now()
	m.syncDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kubeproxy_sync_proxy_rules_duration_seconds",
		Help:    "Duration of each kernel transaction (Apply or Sync) in seconds.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
	})
	m.programming = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kubeproxy_network_programming_duration_seconds",
		Help:    "Time from a ServicePort's last change trigger time to the kernel commit that programmed it, in seconds.",
		Buckets: networkProgrammingBuckets(),
	})
	m.receiveDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "doorman_agent_update_receive_delay_seconds",
		Help:    "Time from a ServicePort's last change trigger time to the update that brought it coming off the stream, in seconds (network programming latency before the agent's own share).",
		Buckets: prometheus.ExponentialBuckets(1e-4, 1.5, 30), // 100 µs … about 13 s
	})
	m.lastSync = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
		Help: "The last time a kernel transaction committed, in Unix seconds.",
	})
	m.ops = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "doorman_agent_kernel_transaction_ops",
		Help:    "Kernel objects added, deleted or replaced per committed transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 11), // 1 … ~1M
	})
	m.cacheLoad = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "doorman_agent_cache_load_seconds",
		Help: "Time taken to open the cache and restore its view at start-up, in seconds.",
	})
	m.streamBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_agent_stream_bytes_received_total",
		Help: "Bytes received from the control plane on the wire (gRPC messages with their headers).",
	})
	m.cleanErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_agent_conntrack_clean_errors_total",
		Help: "Failed deletions of stale UDP conntrack entries after a committed transaction.",
	})
	m.healthErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_agent_health_check_errors_total",
		Help: "Updates of the healthCheckNodePort servers that left a port unserved (cannot listen, or claimed twice).",
	})
	m.syncReads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "doorman_agent_sync_reads_total",
		Help: "Full Syncs of the kernel table by whether they read its elements back: reason generation_unchanged did not (the kernel is as the agent's last own commit left it, or changed since only by commits the drift monitor saw leave doorman's table alone); no_record, generation_changed, table_changed and view_changed did.",
	}, []string{"reason"})
	m.syncSteps = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "doorman_agent_sync_step_duration_seconds",
		Help:    "Time of each step of a full Sync of the kernel table, in seconds: render (the view to sets, chains and elements), read (the table read back), plan, encode (the transaction to netlink messages) and commit (the batch through the kernel: the kernel's own share).",
		Buckets: prometheus.ExponentialBuckets(1e-4, 2, 18), // 100 µs … about 13 s
	}, []string{"step"})
	for _, c := range []prometheus.Collector{m.syncDuration, m.programming, m.receiveDelay, m.lastSync, m.ops, m.cacheLoad, m.streamBytes, m.cleanErrors, m.healthErrors, m.syncReads, m.syncSteps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	if err := reg.Register(version.Collector("nodeagent")); err != nil {
		return nil, fmt.Errorf("register build info: %w", err)
	}
	return m, nil
}

// ConntrackCleanFailed counts a failed conntrack clean-up.
func (m *Metrics) ConntrackCleanFailed() { m.cleanErrors.Inc() }

// HealthCheckFailed counts a health check update that left a port
// unserved.
func (m *Metrics) HealthCheckFailed() { m.healthErrors.Inc() }

// Watch registers the totals read from src at scrape time.
func (m *Metrics) Watch(reg prometheus.Registerer, src Source) error {
	counter := func(name, help string, v func(agent.Counters) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v(src.Counters())) })
	}
	gauge := func(name, help string, v func(agent.Counters) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(src.Counters()) })
	}
	boolean := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		gauge("doorman_agent_version", "Version of the view the agent applied.", func(c agent.Counters) float64 { return float64(c.Version) }),
		counter("doorman_agent_acks_total", "Updates acknowledged after their kernel transaction committed.", func(c agent.Counters) uint64 { return c.Acks }),
		counter("doorman_agent_nacks_total", "Updates rejected (NACK); the previous view stayed in force.", func(c agent.Counters) uint64 { return c.Nacks }),
		gauge("doorman_agent_last_nack_version", "Version of the last rejected update (0: none).", func(c agent.Counters) float64 { return float64(c.LastNackVersion) }),
		counter("doorman_agent_full_syncs_total", "Full reconciles of the kernel table (start-up, first update, after a failed Apply, resyncs).", func(c agent.Counters) uint64 { return c.FullSyncs }),
		counter("doorman_agent_drift_repairs_total", "Times the kernel table was found changed by someone else and repaired.", func(c agent.Counters) uint64 { return c.DriftRepairs }),
		gauge("doorman_agent_not_programmed_entries", "Entries the agent holds whose value is not in the kernel (cannot be rendered, or refused by the kernel).", func(c agent.Counters) float64 { return float64(c.NotProgrammed) }),
		counter("doorman_agent_kernel_rejections_total", "Entry values the kernel refused; each is kept out of the kernel until its value changes.", func(c agent.Counters) uint64 { return c.Rejections }),
		gauge("doorman_agent_connected", "1 while a stream to a control plane is open.", func(c agent.Counters) float64 { return boolean(c.Connected) }),
		gauge("doorman_agent_kernel_ready", "1 once the kernel holds a view (from the cache or the stream).", func(c agent.Counters) float64 { return boolean(c.KernelReady) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register agent metrics: %w", err)
		}
	}
	return nil
}

// Handler serves /metrics from g.
//
// /proxyMode answers "nftables", as kube-proxy's metrics server says which
// dataplane it programs: tools and upstream tests read it to tell an
// nftables proxy from an iptables or IPVS one.
func Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write([]byte("nftables"))
	})
	return mux
}

// CacheLoaded records how long the cache took to load.
func (m *Metrics) CacheLoaded(d time.Duration) { m.cacheLoad.Set(d.Seconds()) }

// Updated records the network programming latency of an applied update:
// from each trigger time it brings to the commit of its transaction.
// Trigger times from before the agent started are not measured (a restart
// would report the age of every Service), as kube-proxy does.
func (m *Metrics) Updated(out agent.Outcome) {
	if out.Err != nil || len(out.TriggerTimes) == 0 {
		return
	}
	commit := m.lastCommit.Load()
	if commit == 0 {
		commit = m.now().UnixNano()
	}
	start := m.start.UnixNano()
	for _, t := range out.TriggerTimes {
		if t < start {
			continue
		}
		m.programming.Observe(max(0, time.Duration(commit-t).Seconds()))
		if !out.Received.IsZero() {
			m.receiveDelay.Observe(max(0, time.Duration(out.Received.UnixNano()-t).Seconds()))
		}
	}
}

// Kernel wraps k so that each transaction is timed and sized.
func (m *Metrics) Kernel(k agent.Kernel) agent.Kernel { return &timedKernel{m: m, inner: k} }

type timedKernel struct {
	m     *Metrics
	inner agent.Kernel
}

func (k *timedKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	start := k.m.now()
	stats, err := k.inner.Sync(view)
	k.m.transaction(start, stats, err)
	if stats.Read != "" {
		k.m.syncReads.WithLabelValues(string(stats.Read)).Inc()
	}
	k.m.steps(stats.Steps, err)
	return stats, err
}

func (k *timedKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	start := k.m.now()
	stats, err := k.inner.Apply(changes)
	k.m.transaction(start, stats, err)
	return stats, err
}

// RetireUnused is not timed: it is a few small transactions on the
// resync period, not the programming of an update.
func (k *timedKernel) RetireUnused() (int, error) { return k.inner.RetireUnused() }

// Unchanged counts a periodic resync that reads nothing back with the
// Syncs that did not read the elements.
func (k *timedKernel) Unchanged() bool {
	unchanged := agent.Unchanged(k.inner)
	if unchanged {
		k.m.syncReads.WithLabelValues(string(dataplane.ReadSkipped)).Inc()
	}
	return unchanged
}

// steps observes where a committed Sync's time went.
func (m *Metrics) steps(s dataplane.SyncSteps, err error) {
	var partial *dataplane.InvalidEntriesError
	if err != nil && !errors.As(err, &partial) {
		return
	}
	for _, st := range []struct {
		name string
		d    time.Duration
	}{{"render", s.Render}, {"read", s.Read}, {"plan", s.Plan}, {"encode", s.Encode}, {"commit", s.Commit}} {
		m.syncSteps.WithLabelValues(st.name).Observe(st.d.Seconds())
	}
}

func (m *Metrics) transaction(start time.Time, stats dataplane.Stats, err error) {
	end := m.now()
	m.syncDuration.Observe(end.Sub(start).Seconds())
	var partial *dataplane.InvalidEntriesError
	if err != nil && !errors.As(err, &partial) {
		return
	}
	m.ops.Observe(float64(stats.Ops))
	m.lastSync.Set(float64(end.UnixNano()) / 1e9)
	m.lastCommit.Store(end.UnixNano())
}

// StatsHandler counts the bytes received on the stream's client
// connection.
func (m *Metrics) StatsHandler() stats.Handler { return &bytesHandler{c: m.streamBytes} }

type bytesHandler struct{ c prometheus.Counter }

func (h *bytesHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (h *bytesHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.InPayload); ok && p.IsClient() {
		h.c.Add(float64(p.WireLength))
	}
}

func (h *bytesHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *bytesHandler) HandleConn(context.Context, stats.ConnStats) {}
