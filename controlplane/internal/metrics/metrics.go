package metrics

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/stats"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch"
	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// SyncMethod is the stream whose traffic the stream series count.
var SyncMethod = "/" + doormanv1.AgentService_ServiceDesc.ServiceName + "/Sync"

// Source is the hub's view of its nodes and Services (*hub.Hub).
type Source interface {
	Nodes() (uint64, []differ.Status)
	// AddressConflicts is the number of addresses Services are sent
	// without because another Service owns them.
	AddressConflicts() int
}

// Metrics holds the control plane's series.
type Metrics struct {
	reg *prometheus.Registry

	bytesSent    prometheus.Counter
	messagesSent prometheus.Counter
	bytesRecv    prometheus.Counter
	acks         prometheus.Counter
	nacks        prometheus.Counter
	streams      prometheus.Counter
	events       *prometheus.CounterVec
	recompute    prometheus.Histogram
	sliceDelay   prometheus.Histogram
	sendDelay    prometheus.Histogram
	// start: trigger times before it are not measured (a restart would
	// report the age of every EndpointSlice), as the agent does.
	start time.Time
}

// delayBuckets spread 100 µs … about 13 s, for the trigger-time latencies.
var delayBuckets = prometheus.ExponentialBuckets(1e-4, 1.5, 30)

// New creates the series in a private registry, with the per-node ones
// read from src at every scrape.
func New(src Source) (*Metrics, error) {
	m := &Metrics{reg: prometheus.NewRegistry(), start: time.Now()}
	m.bytesSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_stream_bytes_sent_total",
		Help: "Bytes sent to agents on AgentService.Sync streams, on the wire (gRPC messages with their headers).",
	})
	m.messagesSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_updates_sent_total",
		Help: "Updates (SyncResponse messages) sent to agents.",
	})
	m.bytesRecv = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_stream_bytes_received_total",
		Help: "Bytes received from agents on AgentService.Sync streams, on the wire.",
	})
	m.acks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_acks_total",
		Help: "Acks received from agents (an update committed in a node's kernel).",
	})
	m.nacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_nacks_total",
		Help: "Nacks received from agents (an update a node could not apply).",
	})
	m.streams = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "doorman_controlplane_streams_opened_total",
		Help: "AgentService.Sync streams opened by agents.",
	})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "doorman_controlplane_informer_events_total",
		Help: "Objects the informers delivered, by kind (service, endpointslice, node, servicecidr) and op (set, delete).",
	}, []string{"kind", "op"})
	m.recompute = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "doorman_controlplane_model_recompute_duration_seconds",
		Help:    "Time to fold one informer event into the model and the per-node views, in seconds.",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12), // 1 µs … 4 s
	})
	m.sliceDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "doorman_controlplane_endpointslice_event_delay_seconds",
		Help:    "Time from an EndpointSlice's last-change-trigger-time annotation to its informer event reaching the control plane (the API server's and the watch's share of network programming latency), in seconds.",
		Buckets: delayBuckets,
	})
	m.sendDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "doorman_controlplane_update_send_delay_seconds",
		Help:    "Time from the newest trigger time an incremental update brings to its write on an agent's stream, per agent, in seconds.",
		Buckets: delayBuckets,
	})
	for _, kind := range []string{"service", "endpointslice", "node", "servicecidr"} {
		for _, op := range []string{"set", "delete"} {
			m.events.WithLabelValues(kind, op)
		}
	}
	cs := []prometheus.Collector{
		m.bytesSent, m.messagesSent, m.bytesRecv, m.acks, m.nacks, m.streams, m.events, m.recompute, m.sliceDelay, m.sendDelay,
		nodeCollector{src: src}, version.Collector("controlplane"),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// nodeCollector reads every node's status from the hub at scrape time, so
// nothing is kept per node here.
type nodeCollector struct{ src Source }

var (
	versionDesc   = prometheus.NewDesc("doorman_controlplane_version", "Newest version of the views.", nil, nil)
	connectedDesc = prometheus.NewDesc("doorman_controlplane_connected_nodes", "Nodes with an open Sync stream.", nil, nil)
	ackedDesc     = prometheus.NewDesc("doorman_controlplane_node_acked_version", "Version the node last acknowledged.", []string{"node"}, nil)
	lagDesc       = prometheus.NewDesc("doorman_controlplane_node_lag_versions", "Versions the node's acknowledged view is behind the newest version that changed it.", []string{"node"}, nil)
	entriesDesc   = prometheus.NewDesc("doorman_controlplane_node_entries", "Entries in the node's current view.", []string{"node"}, nil)
	conflictsDesc = prometheus.NewDesc("doorman_service_address_conflicts",
		"Addresses (address . protocol . port) Services claim and are sent without, because another Service owns them (a Warning Event AddressConflict names each). Every replica computes the same value.", nil, nil)
)

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{versionDesc, connectedDesc, ackedDesc, lagDesc, entriesDesc, conflictsDesc} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	version, nodes := c.src.Nodes()
	ch <- prometheus.MustNewConstMetric(versionDesc, prometheus.GaugeValue, float64(version))
	connected := 0
	for _, s := range nodes {
		if s.Connected {
			connected++
		}
		ch <- prometheus.MustNewConstMetric(ackedDesc, prometheus.GaugeValue, float64(s.Acked), s.Node)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(s.Lag()), s.Node)
		ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(s.Entries), s.Node)
	}
	ch <- prometheus.MustNewConstMetric(connectedDesc, prometheus.GaugeValue, float64(connected))
	ch <- prometheus.MustNewConstMetric(conflictsDesc, prometheus.GaugeValue, float64(c.src.AddressConflicts()))
}

// StatsHandler counts the Sync streams' traffic; install it with
// grpc.StatsHandler.
func (m *Metrics) StatsHandler() stats.Handler { return statsHandler{m} }

type statsHandler struct{ m *Metrics }

type syncKey struct{}

func (h statsHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if info.FullMethodName == SyncMethod {
		return context.WithValue(ctx, syncKey{}, true)
	}
	return ctx
}

func (h statsHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(syncKey{}) == nil {
		return
	}
	switch s := s.(type) {
	case *stats.Begin:
		h.m.streams.Inc()
	case *stats.OutPayload:
		h.m.bytesSent.Add(float64(s.WireLength))
		h.m.messagesSent.Inc()
	case *stats.InPayload:
		h.m.bytesRecv.Add(float64(s.WireLength))
		if req, ok := s.Payload.(*doormanv1.SyncRequest); ok {
			switch {
			case req.GetAck() != nil:
				h.m.acks.Inc()
			case req.GetNack() != nil:
				h.m.nacks.Inc()
			}
		}
	}
}

func (h statsHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h statsHandler) HandleConn(context.Context, stats.ConnStats)                       {}

// Sink wraps the informers' sink, counting events and timing each.
func (m *Metrics) Sink(next watch.Sink) watch.Sink { return &sink{m: m, next: next} }

type sink struct {
	m    *Metrics
	next watch.Sink
}

func (s *sink) observe(kind, op string, f func()) {
	t := time.Now()
	f()
	s.m.recompute.Observe(time.Since(t).Seconds())
	s.m.events.WithLabelValues(kind, op).Inc()
}

func (s *sink) SetCompactService(v *compact.Service) {
	s.observe("service", "set", func() { s.next.SetCompactService(v) })
}

func (s *sink) DeleteService(namespace, name string) {
	s.observe("service", "delete", func() { s.next.DeleteService(namespace, name) })
}

func (s *sink) SetCompactSlice(v *compact.Slice) {
	s.m.observeDelay(s.m.sliceDelay, triggerTime(v))
	s.observe("endpointslice", "set", func() { s.next.SetCompactSlice(v) })
}

// triggerTime is a slice's last-change-trigger-time; zero when it has
// none or it does not parse.
func triggerTime(v *compact.Slice) time.Time {
	if v.TriggerTime == 0 {
		return time.Time{}
	}
	return time.Unix(0, v.TriggerTime)
}

// Sent times an update written to an agent's stream from the newest
// trigger time it brings.
func (m *Metrics) Sent(u *wire.Update) {
	if t := u.NewestTrigger(); t > 0 {
		m.observeDelay(m.sendDelay, time.Unix(0, t))
	}
}

func (m *Metrics) observeDelay(h prometheus.Histogram, trigger time.Time) {
	if trigger.IsZero() || trigger.Before(m.start) {
		return
	}
	h.Observe(max(0, time.Since(trigger).Seconds()))
}

func (s *sink) DeleteSlice(namespace, name string) {
	s.observe("endpointslice", "delete", func() { s.next.DeleteSlice(namespace, name) })
}

func (s *sink) SetNode(v *corev1.Node) { s.observe("node", "set", func() { s.next.SetNode(v) }) }

func (s *sink) DeleteNode(name string) {
	s.observe("node", "delete", func() { s.next.DeleteNode(name) })
}

func (s *sink) SetServiceCIDR(v *networkingv1.ServiceCIDR) {
	s.observe("servicecidr", "set", func() { s.next.SetServiceCIDR(v) })
}

func (s *sink) DeleteServiceCIDR(name string) {
	s.observe("servicecidr", "delete", func() { s.next.DeleteServiceCIDR(name) })
}
