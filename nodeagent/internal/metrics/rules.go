package metrics

import (
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/followup"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Rules keeps kube-proxy's series about the rules it syncs, read from the
// entries each kernel transaction carries:
//
//   - kubeproxy_sync_proxy_rules_service_changes_total and _pending,
//     kubeproxy_sync_proxy_rules_endpoint_changes_total and _pending:
//     kube-proxy counts informer events and what its next sync loop run
//     has still to program. doorman has no sync loop and its control plane
//     coalesces API changes, so these count ServicePort entries (one port
//     of one Service in one IP family) changed by kernel transactions;
//   - kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy,
//     ip_family}: a gauge, despite its name, as in kube-proxy.
type Rules struct {
	serviceTotal, endpointTotal     prometheus.Counter
	servicePending, endpointPending prometheus.Gauge
	noLocal                         *prometheus.GaugeVec

	mu     sync.Mutex
	view   map[string]*doormanv1.Entry // as last committed
	counts map[noLocalKey]int          // no local endpoints, over view
}

// noLocalKey is one series of kubeproxy_sync_proxy_rules_no_local_endpoints_total.
type noLocalKey struct{ policy, family string }

// NewRules creates the series and registers them with reg.
func NewRules(reg prometheus.Registerer) (*Rules, error) {
	r := &Rules{
		serviceTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_total",
			Help: "ServicePort entries (one port of one Service in one IP family) whose Service part changed (added, removed, or changed other than in endpoints) in kernel transactions that committed. The control plane coalesces API changes: several Service updates may count once.",
		}),
		endpointTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_total",
			Help: "ServicePort entries whose endpoints changed (an entry added or removed with endpoints included) in kernel transactions that committed. The control plane coalesces EndpointSlice changes: several may count once.",
		}),
		servicePending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_service_changes_pending",
			Help: "ServicePort entries with Service changes in the kernel transaction under way or, when it failed, not committed since; 0 once one commits. The agent programs each update as it arrives (no sync loop).",
		}),
		endpointPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
			Help: "ServicePort entries with endpoint changes in the kernel transaction under way or, when it failed, not committed since; 0 once one commits. The agent programs each update as it arrives (no sync loop).",
		}),
		noLocal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
			Help: "ServicePorts of the committed view with a Local traffic policy (internal or external) and no endpoints on this node, while the Service has endpoints elsewhere. For internalTrafficPolicy Local without NodePort, externalIPs or load balancer IPs the view does not say whether it has endpoints elsewhere: it counts when it has none on this node.",
		}, []string{"traffic_policy", "ip_family"}),
		view:   map[string]*doormanv1.Entry{},
		counts: map[noLocalKey]int{},
	}
	for _, c := range []prometheus.Collector{r.serviceTotal, r.endpointTotal, r.servicePending, r.endpointPending, r.noLocal} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register rules metrics: %w", err)
		}
	}
	r.setNoLocal()
	return r, nil
}

// Kernel wraps k so that each transaction's changes are counted.
func (r *Rules) Kernel(k agent.Kernel) agent.Kernel { return &rulesKernel{r: r, inner: k} }

type rulesKernel struct {
	r     *Rules
	inner agent.Kernel
}

// Sync counts what the view changes since the last commit (at start-up,
// the whole view). The counting runs beside the kernel's Sync, which
// renders the view on one CPU: at start-up every entry is new, and
// counting them first would delay the kernel (and the first update)
// at 100,000 Services.
func (k *rulesKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	k.r.mu.Lock()
	defer k.r.mu.Unlock()
	counted := make(chan syncCount, 1)
	go func() {
		c := k.r.countSync(view)
		k.r.pend(c.tally)
		counted <- c
	}()
	stats, err := k.inner.Sync(view)
	c := <-counted
	if committed(err) {
		k.r.view, k.r.counts = c.view, c.counts
		k.r.commit(c.tally)
	}
	return stats, err
}

// syncCount is what a Sync to a view counts: its changes since the last
// commit, and the view and the no-local-endpoints counts once it commits.
type syncCount struct {
	tally  changeTally
	view   map[string]*doormanv1.Entry
	counts map[noLocalKey]int
}

// countSync counts a Sync to view. It reads r.view: the caller holds r.mu
// and changes nothing until it returns.
func (r *Rules) countSync(view map[string]*doormanv1.Entry) syncCount {
	c := syncCount{tally: r.tallySync(view), view: maps.Clone(view), counts: map[noLocalKey]int{}}
	for _, e := range view {
		countNoLocal(c.counts, e, 1)
	}
	return c
}

func (k *rulesKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	k.r.mu.Lock()
	defer k.r.mu.Unlock()
	t := tally(changes)
	k.r.pend(t)
	stats, err := k.inner.Apply(changes)
	if committed(err) {
		for _, c := range changes {
			k.r.count(c.Old, -1)
			k.r.count(c.New, 1)
			if c.New == nil {
				delete(k.r.view, c.Key)
			} else {
				k.r.view[c.Key] = c.New
			}
		}
		k.r.commit(t)
	}
	return stats, err
}

// RetireUnused changes no entry.
func (k *rulesKernel) RetireUnused() (int, error) { return k.inner.RetireUnused() }

func (k *rulesKernel) Unchanged() bool { return agent.Unchanged(k.inner) }

// committed reports whether a transaction that returned err committed: it
// did when it left only some entries out.
func committed(err error) bool {
	var partial *dataplane.InvalidEntriesError
	return err == nil || errors.As(err, &partial)
}

// changeTally counts the ServicePort entries of one transaction whose
// Service part, and whose endpoints, changed.
type changeTally struct{ services, endpoints int }

func tally(changes []dataplane.Change) changeTally {
	var t changeTally
	for _, c := range changes {
		t.add(c.Old.GetServicePort(), c.New.GetServicePort())
	}
	return t
}

// add counts one entry moving from a to b.
func (t *changeTally) add(a, b *doormanv1.ServicePort) {
	service, endpoints := differs(a, b)
	if service {
		t.services++
	}
	if endpoints {
		t.endpoints++
	}
}

// tallySync counts what a Sync to view changes since the last commit. At
// start-up nothing was committed: every entry of the view is new, and
// listing the view as changes (sorted) first would only cost time.
func (r *Rules) tallySync(view map[string]*doormanv1.Entry) changeTally {
	if len(r.view) > 0 {
		return tally(followup.Changes(r.view, view))
	}
	var t changeTally
	for _, e := range view {
		t.add(nil, e.GetServicePort())
	}
	return t
}

func (r *Rules) pend(t changeTally) {
	r.servicePending.Set(float64(t.services))
	r.endpointPending.Set(float64(t.endpoints))
}

func (r *Rules) commit(t changeTally) {
	r.serviceTotal.Add(float64(t.services))
	r.endpointTotal.Add(float64(t.endpoints))
	r.pend(changeTally{})
	r.setNoLocal()
}

// endpointFields are the ServicePort fields an endpoint change moves: the
// endpoint sets and the trigger time that comes with them.
var endpointFields = map[protoreflect.Name]bool{
	"endpoints": true, "local_endpoints": true, "cluster_endpoints": true, "trigger_time_unix_nano": true,
}

// differs reports whether the Service part (every field but
// endpointFields) and the endpoints of two values of one ServicePort
// entry differ; nil is an absent entry (and a Node entry).
func differs(a, b *doormanv1.ServicePort) (service, endpoints bool) {
	switch {
	case a == nil && b == nil:
		return false, false
	case a == nil:
		return populated(b)
	case b == nil:
		return populated(a)
	}
	ma, mb := a.ProtoReflect(), b.ProtoReflect()
	fields := ma.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if ma.Get(fd).Equal(mb.Get(fd)) {
			continue
		}
		if endpointFields[fd.Name()] {
			endpoints = true
		} else {
			service = true
		}
	}
	return service, endpoints
}

// populated is differs against an absent entry: which parts of s are set.
// It visits only the fields s holds (every entry at start-up, when the
// whole view is new: comparing each field with its default would cost a
// good part of the start-up at 100,000 Services).
func populated(s *doormanv1.ServicePort) (service, endpoints bool) {
	s.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if endpointFields[fd.Name()] {
			endpoints = true
		} else {
			service = true
		}
		return !service || !endpoints
	})
	return service, endpoints
}

// count adds n for each series e counts in.
func (r *Rules) count(e *doormanv1.Entry, n int) { countNoLocal(r.counts, e, n) }

// countNoLocal adds n to counts for each series e counts in.
func countNoLocal(counts map[noLocalKey]int, e *doormanv1.Entry, n int) {
	sp := e.GetServicePort()
	family, ok := ipFamilies[sp.GetFamily()]
	if sp == nil || !ok {
		return
	}
	internal, external := noLocalEndpoints(sp)
	if internal {
		counts[noLocalKey{"internal", family}] += n
	}
	if external {
		counts[noLocalKey{"external", family}] += n
	}
}

// ipFamilies are the ip_family label values, kube-proxy's.
var ipFamilies = map[doormanv1.IPFamily]string{
	doormanv1.IPFamily_IP_FAMILY_IPV4: "IPv4",
	doormanv1.IPFamily_IP_FAMILY_IPV6: "IPv6",
}

func (r *Rules) setNoLocal() {
	for _, policy := range []string{"internal", "external"} {
		for _, family := range ipFamilies {
			r.noLocal.WithLabelValues(policy, family).Set(float64(r.counts[noLocalKey{policy, family}]))
		}
	}
}

// noLocalEndpoints reports, as kube-proxy counts them, whether sp has a
// Local internal (external) traffic policy and no endpoint on this node
// for it, while the Service has endpoints somewhere: with none anywhere,
// traffic is rejected rather than dropped, and kube-proxy does not count
// it. The cluster-wide set is in the view unless internalTrafficPolicy is
// Local and sp has no external address; then sp counts whenever it has
// no endpoint here.
func noLocalEndpoints(sp *doormanv1.ServicePort) (internal, external bool) {
	cluster, known := sp.GetEndpoints(), true
	if sp.GetInternalPolicyLocal() {
		cluster = sp.GetClusterEndpoints()
		known = sp.GetNodePort() != 0 || len(sp.GetExternalIps()) > 0 || len(sp.GetLoadBalancerIps()) > 0
	}
	if known && len(cluster) == 0 {
		return false, false
	}
	internal = sp.GetInternalPolicyLocal() && len(sp.GetEndpoints()) == 0
	external = sp.GetExternalPolicyLocal() && len(sp.GetLocalEndpoints()) == 0
	return internal, external
}
