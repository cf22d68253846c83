package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/promtext"
	"github.com/doorman-proxy/doorman/internal/kubeconfig"
)

// The systems, in the order they are measured at each size.
const (
	sysDoorman   = "doorman"
	sysKPNFT     = "kube-proxy-nftables"
	sysKPIPT     = "kube-proxy-iptables"
	doormanNode  = "node1"
	kpNFTNode    = "node2"
	kpIPTNode    = "node3"
	baselineNode = "node4" // no proxy ever runs here: the no-proxy floor
	echoNode     = "node5" // the echo Pods every path ends at; no proxy either
	sampleLimit  = 100     // Services the connection test spreads over
	changeTick   = 200 * time.Millisecond
	settleBefore = time.Second
)

var allSystems = []string{sysDoorman, sysKPNFT, sysKPIPT}

type proxyFlags struct {
	common
	sizes     string
	changes   int
	connects  int
	bound     time.Duration
	gap       time.Duration
	systems   string
	churnRate float64
	churnFor  time.Duration
	// cpProfile, when set, is where a CPU profile of the control plane's
	// first cpProfileFor after its start is written.
	cpProfile    string
	cpProfileFor time.Duration
}

func runProxy(ctx context.Context, args []string) error {
	var f proxyFlags
	fs := f.flagSet("bench", "bench.png", "controlplane and nodeagent (go build -o bin/ ./controlplane ./nodeagent)")
	fs.StringVar(&f.sizes, "sizes", "", "comma-separated Service counts (default 1000; -full: 1000,10000,100000)")
	fs.IntVar(&f.changes, "changes", 0, "single EndpointSlice changes per system and size (default 20; -full: 50)")
	fs.IntVar(&f.connects, "connects", 0, "connections per path for the per-connection cost (default 200; -full: 1000)")
	fs.DurationVar(&f.bound, "bound", 120*time.Second, "a system whose full sync or one change takes longer stops at that size")
	fs.DurationVar(&f.gap, "gap", 1100*time.Millisecond, "pause between changes (kube-proxy's default --*-min-sync-period is 1s)")
	fs.Float64Var(&f.churnRate, "churn-rate", 50, "changes per second under churn (0: no churn phase)")
	fs.DurationVar(&f.churnFor, "churn-for", 0, "length of the churn phase (default 4s; -full: 10s)")
	fs.StringVar(&f.systems, "systems", strings.Join(allSystems, ","), "systems to measure")
	fs.StringVar(&f.cpProfile, "controlplane-profile", "", "write a CPU profile of doorman's control plane from its start (with --profiling) to this file, suffixed with the size")
	fs.DurationVar(&f.cpProfileFor, "controlplane-profile-for", 10*time.Second, "length of -controlplane-profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.sizes == "" {
		f.sizes = map[bool]string{false: "1000", true: "1000,10000,100000"}[f.full]
	}
	if f.changes == 0 {
		f.changes = map[bool]int{false: 20, true: 50}[f.full]
	}
	if f.churnFor == 0 {
		f.churnFor = map[bool]time.Duration{false: 4 * time.Second, true: 10 * time.Second}[f.full]
	}
	if f.connects == 0 {
		f.connects = map[bool]int{false: 200, true: 1000}[f.full]
	}
	sizes, err := parseSizes(f.sizes)
	if err != nil {
		return err
	}
	systems := strings.Split(f.systems, ",")
	for _, s := range systems {
		if s != sysDoorman && s != sysKPNFT && s != sysKPIPT {
			return fmt.Errorf("-systems: unknown %q (want %s)", s, strings.Join(allSystems, ","))
		}
	}
	if err := f.prepare(); err != nil {
		return err
	}
	if err := checkTools(systems); err != nil {
		return err
	}
	log := f.logger()
	b := &proxyBench{f: f, log: log, systems: systems, rep: &report{}, stopped: map[string]int{}}
	runErr := b.run(ctx, sizes)
	fmt.Println()
	b.rep.table(os.Stdout, allSystems, proxyTable)
	for s, n := range b.stopped {
		fmt.Printf("%s stopped at %d Services: over the %s bound\n", s, n, f.bound)
	}
	return f.writeResults(b.rep, allSystems, proxyPlot, runErr)
}

// checkTools names what kube-proxy needs on this machine.
func checkTools(systems []string) error {
	need := map[string][]string{
		sysKPNFT: {"nft"},
		sysKPIPT: {"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save"},
	}
	var missing []string
	for _, s := range systems {
		for _, t := range need[s] {
			if _, err := exec.LookPath(t); err != nil {
				missing = append(missing, t)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kube-proxy needs %s: apt-get install -y nftables iptables", strings.Join(missing, ", "))
	}
	return nil
}

type proxyBench struct {
	f       proxyFlags
	log     hclog.Logger
	systems []string
	rep     *report
	stopped map[string]int // system → the size at which it went over the bound

	c      *cluster.Cluster
	client kubernetes.Interface
	w      *workload
}

func (b *proxyBench) run(ctx context.Context, sizes []int) error {
	t := time.Now()
	c, err := cluster.Start(ctx, b.f.clusterConfig(5, cluster.ProxyNone, b.log))
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer func() { _ = c.Close() }()
	b.c = c
	fmt.Printf("cluster up in %s (prefix %s, logs %s)\n", time.Since(t).Round(time.Millisecond), c.Prefix(), c.LogDir())
	rc := c.RESTConfig()
	rc.QPS, rc.Burst = 5000, 10000
	if b.client, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	b.w = &workload{client: b.client, etcd: newEtcdLoader(c.EtcdURL()), writers: 4}
	if err := b.w.ensureNamespace(ctx); err != nil {
		return err
	}
	for i := range 2 {
		if b.w.eps[i], err = startPod(ctx, b.client, fmt.Sprintf("echo-%d", i), echoNode); err != nil {
			return err
		}
	}
	for _, n := range []string{doormanNode, kpNFTNode, kpIPTNode, baselineNode} {
		if _, err := startPod(ctx, b.client, "client-"+n, n); err != nil {
			return err
		}
	}
	for _, n := range sizes {
		t := time.Now()
		if err := b.w.grow(ctx, n); err != nil {
			return fmt.Errorf("create %d services: %w", n, err)
		}
		fmt.Printf("%d Services with 2 endpoints each created in %s\n", n, time.Since(t).Round(time.Millisecond))
		for _, s := range b.systems {
			if _, over := b.stopped[s]; over {
				continue
			}
			if err := b.measure(ctx, s, n); err != nil {
				return fmt.Errorf("%s at %d services: %w", s, n, err)
			}
		}
	}
	return nil
}

// running is a started system: its pid (for /proc), how to stop it, and
// how to stop and start its node's process again, keeping what it put in
// the kernel (and, for doorman, its cache and the control plane).
type running struct {
	pid     int
	stop    func()
	restart func(context.Context) (started time.Time, err error)
}

func (b *proxyBench) node(system string) string {
	return map[string]string{sysDoorman: doormanNode, sysKPNFT: kpNFTNode, sysKPIPT: kpIPTNode}[system]
}

func (b *proxyBench) openKernel(system string) (kernel, error) {
	ns := b.netns(b.node(system))
	switch system {
	case sysDoorman:
		return doormanKernel(ns)
	case sysKPNFT:
		return kubeProxyNFTKernel(ns)
	default:
		return iptablesKernel{ns: ns}, nil
	}
}

func (b *proxyBench) netns(node string) string {
	for _, n := range b.c.Nodes() {
		if n.Name == node {
			return n.NetNS
		}
	}
	return ""
}

func (b *proxyBench) start(ctx context.Context, system string, n int) (running, error) {
	node := b.node(system)
	switch system {
	case sysDoorman:
		// The agent starts cold: no cache, no table. The control plane
		// starts first (as it runs already when a node boots); its own
		// cold start is reported apart.
		if err := os.Remove(b.c.AgentCachePath(node)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return running{}, err
		}
		if err := b.listSeconds(ctx, system, n); err != nil {
			return running{}, err
		}
		t := time.Now()
		cp, profiled, err := b.startControlPlane(ctx, n)
		if err != nil {
			return running{}, err
		}
		b.rep.add(system, n, mControlPlaneReady, time.Since(t).Seconds())
		if u, err := readUsage(cp.PID()); err == nil {
			b.rep.add(system, n, mControlPlaneReadyCPU, u.CPUSeconds)
		}
		profiled()
		if err := b.c.StartAgent(node); err != nil {
			cp.Stop(5 * time.Second)
			return running{}, err
		}
		return running{
			pid: b.c.AgentPID(node),
			stop: func() {
				if u, err := readUsage(cp.PID()); err == nil {
					b.rep.add(system, n, mControlPlaneRSS, float64(u.RSSBytes))
					b.rep.add(system, n, mControlPlaneCPU, u.CPUSeconds)
					b.rep.add(system, n, mControlPlanePeakRSSProxy, float64(u.PeakRSS))
				}
				b.c.StopAgent(node)
				cp.Stop(5 * time.Second)
			},
			restart: func(context.Context) (time.Time, error) {
				b.c.StopAgent(node)
				t := time.Now()
				return t, b.c.StartAgent(node)
			},
		}, nil
	default:
		mode := cluster.KubeProxyNFTables
		if system == sysKPIPT {
			mode = cluster.KubeProxyIPTables
		}
		p, err := b.c.StartKubeProxyOn(ctx, node, mode)
		if err != nil {
			return running{}, err
		}
		return running{
			pid: p.PID(),
			stop: func() {
				if p != nil {
					p.Stop(10 * time.Second)
				}
			},
			restart: func(ctx context.Context) (time.Time, error) {
				p.Stop(10 * time.Second)
				t := time.Now()
				p, err = b.c.StartKubeProxyOn(ctx, node, mode)
				return t, err
			},
		}, nil
	}
}

// measure starts one system on its node with n Services present and
// measures it, then stops it so the next system has the CPUs alone.
func (b *proxyBench) measure(ctx context.Context, system string, n int) error {
	k, err := b.openKernel(system)
	if err != nil {
		return err
	}
	defer k.close()
	if err := k.reset(); err != nil {
		return err
	}
	fmt.Printf("%s, %d Services: ", system, n)
	r, err := b.fullProgramming(ctx, system, n, k)
	if err != nil || r.stop == nil {
		return err
	}
	defer r.stop()
	time.Sleep(settleBefore)
	if err := b.connections(system, n); err != nil {
		return err
	}
	g, err := watchGenerations(b.netns(b.node(system)))
	if err != nil {
		return err
	}
	defer g.close()
	if err := b.singleChanges(ctx, system, n, k, g); err != nil {
		return err
	}
	if _, over := b.stopped[system]; !over && b.f.churnRate > 0 {
		if err := b.churnPhase(ctx, system, n, k, g); err != nil {
			return err
		}
	}
	if err := b.usage(system, n, r, k); err != nil {
		return err
	}
	if _, over := b.stopped[system]; !over {
		if err := b.restartPhase(ctx, system, n, r, k, g); err != nil {
			return err
		}
	}
	fmt.Println()
	return nil
}

// fullProgramming starts the system and times its start to every Service
// port in the kernel (read back by netlink / iptables-save; the time is
// the end of the first read that finds them all). A system over the bound
// is stopped and marked; the running value it returns then has no stop.
func (b *proxyBench) fullProgramming(ctx context.Context, system string, n int, k kernel) (running, error) {
	target := n + 1 // and default/kubernetes
	t0 := time.Now()
	r, err := b.start(ctx, system, n)
	if err != nil {
		return running{}, err
	}
	if system == sysDoorman {
		t0 = time.Now() // the agent's start, after the control plane's
	}
	done, err := untilProgrammed(ctx, k, target, b.w.clusterIP(n-1), b.f.bound)
	if err != nil {
		r.stop()
		if errors.Is(err, errOverBound) {
			b.stopped[system] = n
			fmt.Printf("full sync over %s, stopped\n", b.f.bound)
			return running{}, nil
		}
		return running{}, err
	}
	full := done.Sub(t0)
	b.rep.add(system, n, mFullSync, full.Seconds())
	fmt.Printf("full sync %s, ", full.Round(time.Millisecond))
	if system == sysDoorman {
		if err := b.fullSyncSteps(ctx, n, full); err != nil {
			r.stop()
			return running{}, err
		}
	}
	return r, nil
}

// fullSyncSteps splits doorman's full programming by the agent's own
// account of its Sync (doorman_agent_sync_step_duration_seconds): render,
// encode, and the kernel's commit, the floor no change to the agent can
// go under for this table; the rest is everything before the Sync.
func (b *proxyBench) fullSyncSteps(ctx context.Context, n int, full time.Duration) error {
	node := b.node(sysDoorman)
	// The agent observes a committed Sync's five steps one after another
	// right after the commit the bench saw: wait until one scrape holds
	// each step the same number of times, and read the split from it.
	var (
		steps map[string]promtext.Histogram
		syncs uint64
	)
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		if steps, err = b.c.AgentHistogramsBy(ctx, node, "doorman_agent_sync_step_duration_seconds", "step"); err != nil {
			return false, err
		}
		syncs = steps["render"].Count
		for _, s := range syncStepNames {
			if steps[s].Count != syncs {
				return false, nil
			}
		}
		return syncs >= 1, nil
	})
	if err != nil {
		return fmt.Errorf("the agent's Sync steps: %w", err)
	}
	if syncs != 1 {
		// Not the full programming's alone: say so, record nothing.
		fmt.Printf("(%d Syncs of the agent, not split), ", syncs)
		return nil
	}
	render, encode, commit := steps["render"].Sum, steps["encode"].Sum, steps["commit"].Sum
	b.rep.add(sysDoorman, n, mFullSyncRender, render)
	b.rep.add(sysDoorman, n, mFullSyncEncode, encode)
	b.rep.add(sysDoorman, n, mFullSyncCommit, commit)
	other := full.Seconds() - render - encode - commit
	b.rep.add(sysDoorman, n, mFullSyncOther, other)
	fmt.Printf("(render %s, encode %s, kernel commit %s, the rest %s), ",
		secs(render), secs(encode), secs(commit), secs(other))
	return nil
}

// syncStepNames are the values of the step label the agent gives each
// committed Sync (nodeagent/internal/metrics).
var syncStepNames = []string{"render", "read", "plan", "encode", "commit"}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// connections measures the per-connection cost from a Pod on the system's
// node: through ClusterIPs, to Pod IPs directly, and to Pod IPs from a
// node no proxy has run on.
func (b *proxyBench) connections(system string, n int) error {
	podNS, err := b.c.PodNetNS(benchNamespace, "client-"+b.node(system))
	if err != nil {
		return err
	}
	sample := make([]netip.Addr, 0, sampleLimit)
	for i := range min(n, sampleLimit) {
		sample = append(sample, b.w.clusterIP(i))
	}
	baseNS, err := b.c.PodNetNS(benchNamespace, "client-"+baselineNode)
	if err != nil {
		return err
	}
	inPod := func(fn func() error) error { return cluster.InNetNS(podNS, fn) }
	pods := hostPorts(b.w.eps[:], podPort)
	cc, err := connectCost([]connectPath{
		{inNS: inPod, addrs: hostPorts(sample, servicePort)},
		{inNS: inPod, addrs: pods},
		{inNS: func(fn func() error) error { return cluster.InNetNS(baseNS, fn) }, addrs: pods},
	}, b.f.connects)
	if err != nil {
		return fmt.Errorf("connections: %w", err)
	}
	service, direct, noProxy := cc.Medians[0], cc.Medians[1], cc.Medians[2]
	b.rep.add(system, n, mConnectRatioVsDirect, float64(service)/float64(direct))
	b.rep.add(system, n, mConnectRatioNonService, float64(direct)/float64(noProxy))
	b.rep.add(system, n, mConnectService, service.Seconds())
	b.rep.add(system, n, mConnectDirect, direct.Seconds())
	b.rep.add(system, n, mConnectNoProxy, noProxy.Seconds())
	if cc.Failures > 0 {
		b.rep.add(system, n, mConnectFailures, float64(cc.Failures))
	}
	fmt.Printf("connect %s, direct %s, with no proxy %s, ", service, direct, noProxy)
	return nil
}

// singleChanges writes changes one at a time and times each, API write →
// the commit that put the new endpoint in the kernel; for doorman it
// splits each into shares.
func (b *proxyBench) singleChanges(ctx context.Context, system string, n int, k kernel, g *generations) error {
	var shares *shareReader
	if system == sysDoorman {
		var err error
		if shares, err = newShareReader(ctx, b.c, b.node(system)); err != nil {
			return err
		}
	}
	var lat []time.Duration
	for i := range b.f.changes {
		d, err := b.oneChange(ctx, n, i, k, g)
		if errors.Is(err, errOverBound) {
			b.stopped[system] = n
			fmt.Printf("a change took over %s, stopped\n", b.f.bound)
			break
		}
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		lat = append(lat, d)
		if shares != nil {
			if err := shares.changed(ctx, 2*time.Second); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
		}
		time.Sleep(b.f.gap)
	}
	if len(lat) > 0 {
		b.rep.add(system, n, mChangeP50, percentile(lat, 50).Seconds())
		b.rep.add(system, n, mChangeP99, percentile(lat, 99).Seconds())
		b.rep.add(system, n, mChanges, float64(len(lat)))
		fmt.Printf("change p50 %s p99 %s, ", percentile(lat, 50).Round(100*time.Microsecond), percentile(lat, 99).Round(100*time.Microsecond))
	}
	if shares != nil {
		shares.report(b.rep, system, n)
	}
	return nil
}

// oneChange writes change i and returns the time to its commit; errOverBound
// when it was not in the kernel within the bound.
func (b *proxyBench) oneChange(ctx context.Context, n, i int, k kernel, g *generations) (time.Duration, error) {
	svc := changeTarget(i, 101, n)
	ip := b.w.freshIP()
	g.drain()
	t := time.Now()
	at, err := b.writeAndWait(ctx, svc, ip, k, g)
	if err != nil {
		return 0, err
	}
	d := max(at.Sub(t), 0)
	b.log.Debug("change programmed", "services", n, "service", serviceName(svc), "endpoint", ip, "latency", d)
	return d, nil
}

// churnPhase times changes written at the churn rate.
func (b *proxyBench) churnPhase(ctx context.Context, system string, n int, k kernel, g *generations) error {
	lat, err := b.churn(ctx, system, k, g, n)
	if err != nil {
		return fmt.Errorf("churn: %w", err)
	}
	if len(lat) > 0 {
		b.rep.add(system, n, mChurnP50, percentile(lat, 50).Seconds())
		b.rep.add(system, n, mChurnP99, percentile(lat, 99).Seconds())
		fmt.Printf("under churn (%.0f/s) p50 %s p99 %s, ", b.f.churnRate, percentile(lat, 50).Round(100*time.Microsecond), percentile(lat, 99).Round(100*time.Microsecond))
	}
	return nil
}

// usage records the process's RSS and CPU and what it put in the kernel.
func (b *proxyBench) usage(system string, n int, r running, k kernel) error {
	u, err := readUsage(r.pid)
	if err != nil {
		return err
	}
	b.rep.add(system, n, mRSS, float64(u.RSSBytes))
	b.rep.add(system, n, mCPU, u.CPUSeconds)
	o, err := k.objects()
	if err != nil {
		return err
	}
	b.rep.add(system, n, mKernelObjects, float64(o.total()))
	b.rep.add(system, n, mKernelRules, float64(o.Rules))
	b.rep.add(system, n, mKernelChains, float64(o.Chains))
	b.rep.add(system, n, mKernelElements, float64(o.Elements))
	fmt.Printf("RSS %.1f MiB, CPU %.2fs, %d kernel objects", float64(u.RSSBytes)/(1<<20), u.CPUSeconds, o.total())
	return nil
}

// restartPhase stops and starts the process with everything it programmed
// still in the kernel; one change is written as it starts and timed to
// the kernel — how long a restarted proxy leaves the node blind to the
// cluster.
func (b *proxyBench) restartPhase(ctx context.Context, system string, n int, r running, k kernel, g *generations) error {
	d, err := b.restartChange(ctx, r, k, g, n)
	switch {
	case errors.Is(err, errOverBound):
		fmt.Printf(", restart: the change was not in the kernel within %s", b.f.bound)
	case err != nil:
		return fmt.Errorf("restart: %w", err)
	default:
		b.rep.add(system, n, mRestartChange, d.Seconds())
		fmt.Printf(", restart to a change in the kernel %s", d.Round(time.Millisecond))
	}
	return nil
}

// restartChange restarts the system's process, writes one change as soon
// as the new process has started, and returns the time from the start to
// the commit that put the change in the kernel.
func (b *proxyBench) restartChange(ctx context.Context, r running, k kernel, g *generations, n int) (time.Duration, error) {
	svc := changeTarget(b.f.changes+1, 101, n)
	ip := b.w.freshIP()
	g.drain()
	t, err := r.restart(ctx)
	if err != nil {
		return 0, err
	}
	at, err := b.writeAndWait(ctx, svc, ip, k, g)
	if err != nil {
		return 0, err
	}
	return max(at.Sub(t), 0), nil
}

// writeAndWait puts ip behind Service svc through the API and returns the
// time of the commit that put it in the kernel; errOverBound when it was
// not there within the bound.
func (b *proxyBench) writeAndWait(ctx context.Context, svc int, ip netip.Addr, k kernel, g *generations) (time.Time, error) {
	if err := b.w.changeEndpoint(ctx, svc, ip); err != nil {
		return time.Time{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, b.f.bound)
	defer cancel()
	want := map[string]wanted{serviceName(svc): {b.w.clusterIP(svc), ip}}
	at, err := waitFor(cctx, g, changeTick, func() (bool, error) {
		found, err := k.present(want)
		return len(found) == 1, err
	})
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return time.Time{}, errOverBound
	}
	return at, err
}

var errOverBound = errors.New("over the bound")

// untilProgrammed polls the kernel until it dispatches target Service
// ports and returns when they were all there. A kernel that can look one
// Service port up is asked, cheaply and often, for the last Service
// created (last); once it is there all are counted (a read that takes
// seconds at 100,000), and if all are there the time is the end of the
// lookup that found the last: every system here programs a sync in one
// transaction, so what the count finds was in place when the lookup
// found its last element. Otherwise, and for kernels without lookups,
// the time is the end of the first count that finds them all.
func untilProgrammed(ctx context.Context, k kernel, target int, last netip.Addr, bound time.Duration) (time.Time, error) {
	deadline := time.Now().Add(bound)
	p, probing := k.(prober)
	for {
		t := time.Now()
		var found time.Time // when the lookup found the last Service
		if probing {
			ok, err := p.dispatches(last)
			if err != nil {
				return time.Time{}, err
			}
			if !ok {
				if t.After(deadline) {
					return time.Time{}, errOverBound
				}
				select {
				case <-ctx.Done():
					return time.Time{}, ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
				continue
			}
			found, probing = time.Now(), false
		}
		got, err := k.programmed()
		if err != nil {
			return time.Time{}, err
		}
		end := time.Now()
		if got >= target {
			if !found.IsZero() {
				return found, nil
			}
			return end, nil
		}
		if end.After(deadline) {
			return time.Time{}, errOverBound
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(max(20*time.Millisecond, end.Sub(t))):
		}
	}
}

// churn writes changes at a steady rate, each to another Service, and
// times each from its API write to the commit that put its endpoint in
// the kernel. Changes still missing one bound after the last write are
// reported as over the bound.
func (b *proxyBench) churn(ctx context.Context, system string, k kernel, g *generations, n int) ([]time.Duration, error) {
	count := int(b.f.churnRate * b.f.churnFor.Seconds())
	if n > 2*sampleLimit {
		count = min(count, n-sampleLimit) // each to a different Service
	}
	pending := &pendingChanges{m: map[string]pendingChange{}}
	written := make(chan error, 1)
	g.drain()
	go func() { written <- b.writeChurn(ctx, count, n, pending) }()
	clock := newCommitClock(g, changeTick)
	defer clock.stop()
	var lat []time.Duration
	var deadline time.Time
	for {
		select {
		case err := <-written:
			if err != nil {
				return nil, err
			}
			deadline = time.Now().Add(b.f.bound)
		default:
		}
		left := pending.left()
		if !deadline.IsZero() && left == 0 {
			return lat, nil
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			b.rep.add(system, n, mChurnOverBound, float64(left))
			return lat, nil
		}
		at, err := clock.next(ctx)
		if err != nil {
			return nil, err
		}
		// What is pending now, after the commit: a change written while
		// the clock waited may be the one this commit carried.
		want := pending.wanted()
		found, err := k.present(want)
		if err != nil {
			return nil, err
		}
		lat = append(lat, pending.settle(found, want, at)...)
	}
}

// writeChurn writes count changes at the churn rate, each recorded as
// pending before its write.
func (b *proxyBench) writeChurn(ctx context.Context, count, n int, pending *pendingChanges) error {
	t := time.NewTicker(time.Duration(float64(time.Second) / b.f.churnRate))
	defer t.Stop()
	for i := range count {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		svc := changeTarget(i, 557, n)
		ip := b.w.freshIP()
		pending.add(serviceName(svc), pendingChange{clusterIP: b.w.clusterIP(svc), ip: ip, at: time.Now()})
		if err := b.w.changeEndpoint(ctx, svc, ip); err != nil {
			return err
		}
	}
	return nil
}

// pendingChange is a change written and not yet seen in the kernel.
type pendingChange struct {
	clusterIP, ip netip.Addr
	at            time.Time
}

// pendingChanges are the churn's changes not yet seen, by Service.
type pendingChanges struct {
	mu sync.Mutex
	m  map[string]pendingChange
}

func (p *pendingChanges) add(svc string, c pendingChange) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[svc] = c
}

func (p *pendingChanges) left() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

func (p *pendingChanges) wanted() map[string]wanted {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := make(map[string]wanted, len(p.m))
	for svc, c := range p.m {
		want[svc] = wanted{c.clusterIP, c.ip}
	}
	return want
}

// settle removes the changes the kernel was found to hold (unless a newer
// change to the same Service came since) and returns their latencies to
// the commit at.
func (p *pendingChanges) settle(found map[string]bool, want map[string]wanted, at time.Time) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var lat []time.Duration
	for svc := range found {
		if c, ok := p.m[svc]; ok && c.ip == want[svc].endpoint {
			lat = append(lat, max(at.Sub(c.at), 0))
			delete(p.m, svc)
		}
	}
	return lat
}

// changeTarget picks the Service of the i-th change: spread over the
// Services, never one of the first sampleLimit that the connection test
// dials (a changed Service points at an address nothing answers on).
func changeTarget(i, offset, n int) int {
	if n <= 2*sampleLimit {
		return (i*7919 + offset) % n
	}
	return sampleLimit + (i*7919+offset)%(n-sampleLimit)
}

// listSeconds times what the API server alone takes to give the control
// plane its initial state: a LIST of every Service and one of every
// EndpointSlice, at once (as the informers read them), in protobuf (as
// the control plane asks for it).
func (b *proxyBench) listSeconds(ctx context.Context, system string, n int) error {
	rc := rest.CopyConfig(b.c.RESTConfig())
	rc.QPS, rc.Burst = 5000, 10000
	kubeconfig.UseProtobuf(rc)
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	t := time.Now()
	var g errgroup.Group
	g.Go(func() error {
		_, err := client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		return err
	})
	g.Go(func() error {
		_, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
		return err
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	b.rep.add(system, n, mAPIServerList, time.Since(t).Seconds())
	fmt.Printf("API server's lists %s, ", time.Since(t).Round(time.Millisecond))
	return nil
}

// startControlPlane starts doorman's control plane and returns once it
// is ready. With -controlplane-profile it profiles its CPU from its start;
// profiled then waits for the profile (the agent must not start before
// it ends, or the profile would show the agent's session).
func (b *proxyBench) startControlPlane(ctx context.Context, n int) (cp *cluster.Process, profiled func(), err error) {
	if b.f.cpProfile == "" {
		cp, err := b.c.StartDoormanControlPlane(ctx)
		return cp, func() {}, err
	}
	path := fmt.Sprintf("%s.%d", b.f.cpProfile, n)
	done := make(chan error, 1)
	pctx, cancel := context.WithCancel(ctx)
	go func() {
		for b.c.ControlPlaneHTTP() == "" && pctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		done <- fetchCPUProfile(pctx, b.c.ControlPlaneHTTP(), b.f.cpProfileFor, path)
	}()
	cp, err = b.c.StartDoormanControlPlane(ctx, "--profiling")
	if err != nil {
		cancel()
		if perr := <-done; perr != nil {
			b.log.Debug("control plane profile", "error", perr)
		}
		return nil, nil, err
	}
	return cp, func() {
		defer cancel()
		if err := <-done; err != nil {
			b.log.Warn("control plane profile", "error", err)
			return
		}
		fmt.Printf("control plane profile %s, ", path)
	}, nil
}
