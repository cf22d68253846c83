package main

// The benchmarks' figures, registered in one place: each is one register
// call below, and a measurement records it with report.add. The tables
// (report.table) and plots (plotPanels) show what the registry says,
// in its order; TestMetricRegistry checks that every figure recorded is
// registered and every registered one is recorded and shown.

// metric is one figure the benchmarks record.
type metric struct {
	// Key names the figure in the records (the JSON's "metric") and the
	// table. Two metrics may share a key only if no view shows both.
	Key  string
	Unit unit
	// Better says which way a system wins (for the table's reader).
	Better better
	// Desc says what is measured, printed under the table.
	Desc string
	// Shown are the views (tables and plot panels) showing it.
	Shown view
	// Legend labels its series in a panel that plots several metrics.
	Legend string
}

type unit string

const (
	unitSeconds unit = "seconds"
	unitBytes   unit = "bytes"
	unitCount   unit = "count"
	unitRatio   unit = "ratio"
)

type better int

const (
	informational better = iota // context, not a score
	lowerIsBetter
	higherIsBetter
)

func (b better) String() string {
	return map[better]string{informational: "", lowerIsBetter: "lower", higherIsBetter: "higher"}[b]
}

// view is a set of tables and plot panels.
type view uint

const (
	proxyTable view = 1 << iota // `bench` (proxy): doorman against kube-proxy
	scaleTable                  // `bench scale`: the control plane against simulated agents
	proxyChangePlot
	proxyFullSyncPlot
	scaleChangePlot
	scaleConvergencePlot
)

// panels are the plots' panels: each shows the metrics registered with
// its view, one series per system and metric.
var panels = []panelSpec{
	{View: proxyChangePlot, Title: "one EndpointSlice change -> kernel", XLabel: "Services", YLabel: "seconds"},
	{View: proxyFullSyncPlot, Title: "full programming (start -> all Services)", XLabel: "Services", YLabel: "seconds"},
	{View: scaleChangePlot, Title: "one change -> last agent's ACK", XLabel: "Services", YLabel: "seconds"},
	{View: scaleConvergencePlot, Title: "start-up, failover and restart to full convergence", XLabel: "Services", YLabel: "seconds"},
}

// proxyPlot and scalePlot are the panels each command draws.
const (
	proxyPlot = proxyChangePlot | proxyFullSyncPlot
	scalePlot = scaleChangePlot | scaleConvergencePlot
)

// registry holds every metric in the order tables list them.
var registry []*metric

func register(m metric) *metric {
	p := &m
	registry = append(registry, p)
	return p
}

// `bench` (proxy): one system on one node, per number of Services.
var (
	mControlPlaneReady = register(metric{Key: "controlplane_ready_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman's control plane from start to serving"})
	mControlPlaneReadyCPU = register(metric{Key: "controlplane_ready_cpu_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman's control plane, CPU time from its start to serving"})
	mAPIServerList = register(metric{Key: "apiserver_list_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "a LIST of every Service and one of every EndpointSlice at once, in protobuf, right before the control plane starts"})
	mFullSync = register(metric{Key: "full_sync_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable | proxyFullSyncPlot,
		Desc: "the proxy's start to every Service in the kernel"})
	mFullSyncRender = register(metric{Key: "full_sync_render_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman within full programming: the agent rendering its view to the table"})
	mFullSyncEncode = register(metric{Key: "full_sync_encode_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman within full programming: the agent encoding its transaction to netlink messages"})
	mFullSyncCommit = register(metric{Key: "full_sync_kernel_commit_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman within full programming: the netlink batch through the kernel (the kernel's own floor for this table)"})
	mFullSyncOther = register(metric{Key: "full_sync_other_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman within full programming: everything else (process start, connect, the view on the stream, decode, read-back, plan)"})
	mConnectRatioVsDirect = register(metric{Key: "connect_ratio_vs_direct", Unit: unitRatio, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "median connect to a ClusterIP over one straight to the Pod"})
	mConnectRatioNonService = register(metric{Key: "connect_ratio_non_service_vs_no_proxy", Unit: unitRatio, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "median connect to a Pod on this node over one from a node without a proxy"})
	mConnectService = register(metric{Key: "connect_service_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "median TCP connect to a ClusterIP"})
	mConnectDirect = register(metric{Key: "connect_direct_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "median TCP connect straight to a Pod"})
	mConnectNoProxy = register(metric{Key: "connect_no_proxy_seconds", Unit: unitSeconds, Shown: proxyTable,
		Desc: "median TCP connect to a Pod from a node without a proxy (the baseline)"})
	mConnectFailures = register(metric{Key: "connect_failures", Unit: unitCount, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "connects that failed"})
	mChangeP50 = register(metric{Key: "change_p50_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable | proxyChangePlot, Legend: "p50",
		Desc: "one EndpointSlice change to the kernel, median"})
	mChangeP99 = register(metric{Key: "change_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable | proxyChangePlot, Legend: "p99",
		Desc: "one EndpointSlice change to the kernel, 99th percentile"})
	mChanges = register(metric{Key: "changes", Unit: unitCount, Shown: proxyTable,
		Desc: "changes timed one at a time"})
	mShareAPIP50          = shareMetric("api", "50", "the API write and watch")
	mShareAPIP99          = shareMetric("api", "99", "the API write and watch")
	mShareControlPlaneP50 = shareMetric("controlplane", "50", "the control plane")
	mShareControlPlaneP99 = shareMetric("controlplane", "99", "the control plane")
	mShareStreamP50       = shareMetric("stream", "50", "the stream")
	mShareStreamP99       = shareMetric("stream", "99", "the stream")
	mShareKernelP50       = shareMetric("kernel", "50", "the agent's decode, render and commit")
	mShareKernelP99       = shareMetric("kernel", "99", "the agent's decode, render and commit")
	mChangesUnsplit       = register(metric{Key: "changes_unsplit", Unit: unitCount, Shown: proxyTable,
		Desc: "changes whose latency histograms did not all grow (left out of the shares)"})
	mChurnP50 = register(metric{Key: "churn_p50_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "a change to the kernel under the churn rate, median"})
	mChurnP99 = register(metric{Key: "churn_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "a change to the kernel under the churn rate, 99th percentile"})
	mChurnOverBound = register(metric{Key: "churn_over_bound", Unit: unitCount, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "churn changes not in the kernel within the bound"})
	mRSS = register(metric{Key: "rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "the node's proxy process, resident memory"})
	mCPU = register(metric{Key: "cpu_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "the node's proxy process, CPU time since its start"})
	mControlPlaneRSS = register(metric{Key: "controlplane_rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman's control plane, resident memory when stopped"})
	mControlPlanePeakRSSProxy = register(metric{Key: "controlplane_peak_rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman's control plane, peak resident memory when stopped (the initial lists' at most)"})
	mControlPlaneCPU = register(metric{Key: "controlplane_cpu_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "doorman's control plane, CPU time when stopped"})
	mKernelObjects = register(metric{Key: "kernel_objects", Unit: unitCount, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "rules, chains and set or map elements the proxy programmed"})
	mKernelRules = register(metric{Key: "kernel_rules", Unit: unitCount, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "rules the proxy programmed"})
	mKernelChains = register(metric{Key: "kernel_chains", Unit: unitCount, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "chains the proxy programmed"})
	mKernelElements = register(metric{Key: "kernel_elements", Unit: unitCount, Shown: proxyTable,
		Desc: "set and map elements the proxy programmed"})
	mRestartChange = register(metric{Key: "restart_change_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "a restarted proxy's start to a change written meanwhile in the kernel"})
)

// shareMetric is a stage's share of one change's latency at a percentile.
func shareMetric(share, p, what string) *metric {
	return register(metric{Key: "change_share_" + share + "_p" + p + "_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: proxyTable,
		Desc: "the share of one change's latency spent in " + what + ", p" + p})
}

// `bench scale`: the control plane against simulated agents.
var (
	mAgents = register(metric{Key: "agents", Unit: unitCount, Shown: scaleTable,
		Desc: "simulated agents"})
	mScaleControlPlaneReady = register(metric{Key: "controlplane_ready_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "a control-plane replica from start to serving"})
	mStartupConvergence = register(metric{Key: "startup_convergence_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable | scaleConvergencePlot, Legend: "start-up",
		Desc: "the agents' start to every agent admitted and acked"})
	startupAdmission = admissionMetrics("startup", "start-up")
	mNodesOnPrimary  = register(metric{Key: "controlplane_nodes_on_primary", Unit: unitCount, Shown: scaleTable,
		Desc: "agents the primary replica serves after start-up"})
	mScaleControlPlaneRSS = register(metric{Key: "controlplane_rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the primary replica's resident memory after start-up"})
	mControlPlanePeakRSS = register(metric{Key: "controlplane_peak_rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the primary replica's peak resident memory through start-up"})
	mStartupHarnessPeakRSS = register(metric{Key: "startup_harness_peak_rss_bytes", Unit: unitBytes, Shown: scaleTable,
		Desc: "the harness's peak resident memory through start-up"})
	mRSSPerNode = register(metric{Key: "controlplane_rss_per_node_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the primary's resident memory per agent it serves"})
	mHeapPerNode = register(metric{Key: "controlplane_heap_per_node_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the primary's heap in use per agent it serves"})
	mScaleChangeP50 = register(metric{Key: "change_p50_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable | scaleChangePlot, Legend: "p50",
		Desc: "one change to the last agent's ACK, median"})
	mScaleChangeP99 = register(metric{Key: "change_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable | scaleChangePlot, Legend: "p99",
		Desc: "one change to the last agent's ACK, 99th percentile"})
	mChangeAgentP99 = register(metric{Key: "change_agent_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the agents' 99th-percentile ACK of one change, median over changes"})
	mBytesPerChange = register(metric{Key: "bytes_per_change_per_node", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "stream bytes an agent received per change"})
	mMessagesPerChange = register(metric{Key: "messages_per_change_per_node", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "stream messages an agent received per change"})
	mServerBytesPerChange = register(metric{Key: "server_bytes_per_change_per_node", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "stream bytes the replicas sent per change and agent"})
	mCPUPerChange = register(metric{Key: "controlplane_cpu_seconds_per_change", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the replicas' CPU time per change"})
	mLocalChangeP50 = register(metric{Key: "local_policy_change_p50_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "one endpoint change of an externalTrafficPolicy: Local Service with an endpoint on every node, to the last agent's ACK, median"})
	mLocalChangeP99 = register(metric{Key: "local_policy_change_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the same, 99th percentile"})
	mLocalBytesPerChange = register(metric{Key: "local_policy_bytes_per_change_per_node", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "stream bytes an agent received per endpoint change of that Service"})
	mLocalCPUPerChange = register(metric{Key: "local_policy_controlplane_cpu_seconds_per_change", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the replicas' CPU time per endpoint change of that Service"})
	mSustainedRate = register(metric{Key: "churn_changes_per_second", Unit: unitCount, Shown: scaleTable,
		Desc: "endpoint changes a second written in the sustained phase, each to a Service of its own"})
	mSustainedP50 = register(metric{Key: "churn_change_p50_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "sustained phase: one change, written to the last agent's ACK, median"})
	mSustainedP99 = register(metric{Key: "churn_change_p99_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "sustained phase: the same, 99th percentile"})
	mSustainedCores = register(metric{Key: "churn_controlplane_cores", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "sustained phase: the replicas' CPU time over its wall time, in cores"})
	mSustainedUpdatesPerSecond = register(metric{Key: "churn_updates_per_agent_per_second", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "sustained phase: updates each agent received a second (the control plane's coalescing)"})
	mFailoverConvergence = register(metric{Key: "failover_convergence_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable | scaleConvergencePlot, Legend: "failover",
		Desc: "the primary's death to every agent acked by the other replica"})
	mFailoverBytesPerNode = register(metric{Key: "failover_bytes_per_node", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "stream bytes per agent that moved"})
	mFailoverFullViews = register(metric{Key: "failover_full_views", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "full views sent in the failover"})
	mFailoverUpserts = register(metric{Key: "failover_upserts", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "upserts sent in the failover"})
	mFailoverAgentsMoved = register(metric{Key: "failover_agents_moved", Unit: unitCount, Shown: scaleTable,
		Desc: "agents that moved to the other replica"})
	failoverAdmission = admissionMetrics("failover", "failover")
	mRestartPeakRSS   = register(metric{Key: "restart_controlplane_peak_rss_bytes", Unit: unitBytes, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "the replicas' highest peak resident memory through a restart of both"})
	mRestartConvergence = register(metric{Key: "restart_convergence_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable | scaleConvergencePlot, Legend: "restart",
		Desc: "both replicas killed to every agent admitted and acked again"})
	mRestartReady = register(metric{Key: "restart_controlplane_ready_seconds", Unit: unitSeconds, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "both replicas killed to both serving again"})
	mRestartFullViews = register(metric{Key: "restart_full_views", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "full views sent after the restart"})
	mRestartUpserts = register(metric{Key: "restart_upserts", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "upserts sent after the restart"})
	restartAdmission            = admissionMetrics("restart", "restart")
	mRestartSecuredOverInsecure = register(metric{Key: "restart_secured_over_insecure", Unit: unitRatio, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "secured restart convergence over an insecure one"})
	mNacks = register(metric{Key: "nacks", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
		Desc: "updates the agents refused"})
	mHarnessPeakRSS = register(metric{Key: "harness_peak_rss_bytes", Unit: unitBytes, Shown: scaleTable,
		Desc: "the harness's peak resident memory over the run (the agents live in it)"})
	mHarnessPeakHeap = register(metric{Key: "harness_peak_heap_bytes", Unit: unitBytes, Shown: scaleTable,
		Desc: "the harness's peak heap over the run"})
)

// admission are the metrics of what admission cost in one phase of
// `bench scale`.
type admission struct {
	reviews, refused, unavailable *metric
}

func admissionMetrics(phase, name string) admission {
	return admission{
		reviews: register(metric{Key: phase + "_token_reviews", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
			Desc: "TokenReviews the API server answered in the " + name}),
		refused: register(metric{Key: phase + "_streams_refused", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
			Desc: "agent streams refused before their first update in the " + name}),
		unavailable: register(metric{Key: phase + "_streams_unavailable", Unit: unitCount, Better: lowerIsBetter, Shown: scaleTable,
			Desc: "agent streams answered Unavailable before their first update in the " + name}),
	}
}
