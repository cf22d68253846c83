package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/promtext"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// The control plane as deploy/base runs it (TLS, TokenReview), and with
// --insecure for the restart's comparison in the same run.
const (
	sysScale         = "doorman-controlplane"
	sysScaleInsecure = "doorman-controlplane-insecure"
)

type scaleFlags struct {
	common
	agents   int
	services int
	changes  int
	gap      time.Duration
	workers  int
	timeout  time.Duration
	// reviewQPS and reviewBurst, when set, replace the control plane's
	// default bound on TokenReviews.
	reviewQPS   float64
	reviewBurst int
	// heapProfile, when set, is where the harness writes its heap
	// profile nearest its peak.
	heapProfile string
	// fullViews bounds the agents receiving their full view at once.
	fullViews int
	// churnRate and churnFor shape the sustained phase (see sustained).
	churnRate float64
	churnFor  time.Duration
	// churnProfile, when set, is where the harness writes the primary
	// replica's CPU profile of the sustained phase (its --profiling).
	churnProfile string
	// cpLogLevel is the replicas' --log-level.
	cpLogLevel string
	// restartProfile, when set, is where the harness writes its CPU
	// profile of the secured restart.
	restartProfile string
	// replicaProfile, when set, is where the harness writes the first
	// replica's CPU profile of the secured restart (its --profiling).
	replicaProfile string
	// nodeCostProfile, when set, is the prefix of the files where the
	// harness writes the primary's heap and goroutine profiles when it
	// measures what the connected nodes cost it (its --profiling).
	nodeCostProfile string
}

func runScale(ctx context.Context, args []string) error {
	var f scaleFlags
	fs := f.flagSet("bench scale", "bench-scale.png", "controlplane")
	fs.IntVar(&f.agents, "agents", 0, "simulated agents (default 1000; -full: 5000)")
	fs.IntVar(&f.services, "services", 0, "Services (default 2000; -full: 10000)")
	fs.IntVar(&f.changes, "changes", 0, "single EndpointSlice changes (default 20; -full: 50)")
	fs.DurationVar(&f.gap, "gap", 200*time.Millisecond, "pause between changes")
	fs.IntVar(&f.workers, "workers", 64, "parallel API writers")
	fs.Float64Var(&f.churnRate, "churn-rate", 100, "endpoint changes a second in the sustained phase, each to a Service of its own (0: no such phase)")
	fs.DurationVar(&f.churnFor, "churn-for", 0, "how long the sustained phase writes (default 15s; -full: 60s)")
	fs.StringVar(&f.churnProfile, "churn-replica-cpu-profile", "", "write the primary replica's CPU profile of the sustained phase's writes to this file (go tool pprof); the secured replicas run with --profiling")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "longest wait for a convergence")
	fs.Float64Var(&f.reviewQPS, "token-review-qps", 0, "the control plane's --token-review-qps (0: its default, as deployed; negative: no bound)")
	fs.IntVar(&f.reviewBurst, "token-review-burst", 0, "the control plane's --token-review-burst (0: its default)")
	fs.StringVar(&f.restartProfile, "restart-cpu-profile", "", "write the harness's CPU profile of the secured restart to this file (go tool pprof)")
	fs.StringVar(&f.replicaProfile, "restart-replica-cpu-profile", "", "write the first replica's CPU profile of the secured restart, its first 5 s, to this file (go tool pprof); the secured replicas run with --profiling")
	fs.StringVar(&f.nodeCostProfile, "node-cost-profile", "", "write the primary replica's heap and goroutine profiles, taken when the per-node cost is measured, to this prefix + .heap and .goroutine (go tool pprof); the secured replicas run with --profiling")
	fs.StringVar(&f.cpLogLevel, "controlplane-log-level", "warn", "the replicas' --log-level (their logs are in the cluster's log directory; -keep keeps it)")
	fs.IntVar(&f.fullViews, "full-views", 128, "agents of the harness receiving and decoding their full view at once (each takes a few MB while it does; negative: no bound)")
	fs.StringVar(&f.heapProfile, "heap-profile", "", "write the harness's heap profile nearest its peak to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.agents == 0 {
		f.agents = map[bool]int{false: 1000, true: 5000}[f.full]
	}
	if f.services == 0 {
		f.services = map[bool]int{false: 2000, true: 10000}[f.full]
	}
	if f.changes == 0 {
		f.changes = map[bool]int{false: 20, true: 50}[f.full]
	}
	if f.churnFor == 0 {
		f.churnFor = map[bool]time.Duration{false: 15 * time.Second, true: time.Minute}[f.full]
	}
	if err := f.prepare(); err != nil {
		return err
	}
	raiseFileLimit(uint64(4*f.agents + 1024))
	s := &scaleSim{f: f, log: f.logger(), rep: &report{}, keys: newKeyTable(), heap: newHeapWatch(f.heapProfile)}
	if f.fullViews > 0 {
		s.fullViews = semaphore.NewWeighted(int64(f.fullViews))
	}
	wctx, stopWatch := context.WithCancel(ctx)
	go s.heap.run(wctx, 100*time.Millisecond)
	runErr := s.run(ctx)
	stopWatch()
	s.reportHarnessMemory()
	fmt.Println()
	systems := []string{sysScale, sysScaleInsecure}
	s.rep.table(os.Stdout, systems, scaleTable)
	return f.writeResults(s.rep, systems, scalePlot, runErr)
}

func raiseFileLimit(n uint64) {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < n {
		l.Cur = min(n, l.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// scaleSim drives the control plane with simulated agents.
type scaleSim struct {
	f    scaleFlags
	log  hclog.Logger
	rep  *report
	keys *keyTable
	heap *heapWatch
	// fullViews, when set, bounds the agents that hold nothing and are
	// being sent their full view: every agent runs in this one process,
	// and a full view takes a few MB from its first byte to its ACK
	// (gRPC's buffers, the message, its decoding), where each real agent
	// has its own node's memory. Agents that hold a view resume by
	// digests and are not bounded.
	fullViews *semaphore.Weighted

	client   kubernetes.Interface
	security []string                      // the control plane's flags when secured
	caPool   *x509.CertPool                // the control plane's CA
	ca       atomic.Pointer[x509.CertPool] // agents dial with TLS and this CA; nil: plaintext

	agents []*simAgent
	epoch  atomic.Int64 // bumped at start-up, failover and restarts
	synced atomic.Int64 // agents that acked in the current epoch
	allIn  chan struct{}
	inMu   sync.Mutex
	lastIn time.Time

	change atomic.Pointer[changeTrack]
	// churn is the sustained phase's changes while it runs.
	churn atomic.Pointer[churn]

	// firstRecv counts the sessions whose control plane answered the
	// Hello with an error before any update, by gRPC code: admissions
	// refused or put off, replicas not serving yet.
	firstRecv [codes.Unauthenticated + 1]atomic.Int64
}

// changeTrack follows one change to every agent.
type changeTrack struct {
	marker string
	// match, when set, replaces marker: it says whether an update
	// acked carries the change.
	match func(*doormanv1.SyncResponse) bool
	start time.Time
	n     int64
	acked atomic.Int64
	mu    sync.Mutex
	lats  []time.Duration
	done  chan struct{}
}

// controlPlane is one replica, run from its binary so its RSS and CPU are
// its own.
type controlPlane struct {
	name       string
	cmd        *exec.Cmd
	grpc, http string
	exited     chan struct{}
}

// loopbackAddrs returns n free addresses on loopback.
func loopbackAddrs(n int) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		out[i] = ln.Addr().String()
		_ = ln.Close()
	}
	return out, nil
}

// startControlPlane starts a replica on the given gRPC and HTTP addresses
// (a restarted replica keeps its own, as a restarted container keeps its
// Pod's IP) and waits until it is ready. secure: with deploy/base's
// security flags; otherwise --insecure. Its log is appended to.
func (s *scaleSim) startControlPlane(ctx context.Context, c *cluster.Cluster, name, grpcAddr, httpAddr string, secure bool) (*controlPlane, error) {
	logf, err := os.OpenFile(filepath.Join(c.LogDir(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"--kubeconfig=" + c.Kubeconfig(), "--listen=" + grpcAddr, "--http-listen=" + httpAddr, "--log-level=" + s.f.cpLogLevel, "--local-endpoints-by-node"}
	if secure {
		args = append(args, s.security...)
		if s.f.replicaProfile != "" || s.f.churnProfile != "" || s.f.nodeCostProfile != "" {
			args = append(args, "--profiling")
		}
	} else {
		args = append(args, "--insecure")
	}
	cmd := exec.Command(filepath.Join(s.f.doormanBin, "controlplane"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cp := &controlPlane{name: name, cmd: cmd, grpc: grpcAddr, http: httpAddr, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(cp.exited)
	}()
	deadline := time.Now().Add(s.f.timeout)
	for {
		if resp, err := http.Get("http://" + cp.http + "/readyz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cp, nil
			}
		}
		select {
		case <-cp.exited:
			return nil, fmt.Errorf("%s exited; see %s", name, logf.Name())
		case <-ctx.Done():
			cp.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cp.kill()
			return nil, fmt.Errorf("%s not ready after %s", name, s.f.timeout)
		}
	}
}

func (cp *controlPlane) kill() {
	_ = cp.cmd.Process.Kill()
	<-cp.exited
}

// metric reads one unlabelled sample from the replica's /metrics.
func (cp *controlPlane) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + cp.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	m, err := promtext.Sums(resp.Body)
	if err != nil {
		return 0, err
	}
	v, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("no %s in /metrics", name)
	}
	return v, nil
}

// cpuSeconds is the CPU time the replicas used so far.
func cpuSeconds(cps []*controlPlane) (float64, error) {
	var sum float64
	for _, cp := range cps {
		u, err := readUsage(cp.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += u.CPUSeconds
	}
	return sum, nil
}

// metricSum adds up an unlabelled sample over the replicas that export it.
func metricSum(cps []*controlPlane, name string) float64 {
	var sum float64
	for _, cp := range cps {
		v, _ := cp.metric(name)
		sum += v
	}
	return sum
}

func (s *scaleSim) run(ctx context.Context) error {
	c, w, err := s.setUp(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	tokens, err := s.credentials(ctx, c)
	if err != nil {
		return err
	}
	s.add(mAgents, float64(s.f.agents))
	t := time.Now()
	cps, err := s.startReplicas(ctx, c)
	defer func() {
		for _, cp := range cps {
			cp.kill()
		}
	}()
	if err != nil {
		return err
	}
	s.add(mScaleControlPlaneReady, time.Since(t).Seconds())
	primary := cps[0]
	base, err := readUsage(primary.cmd.Process.Pid)
	if err != nil {
		return err
	}
	baseHeap, _ := primary.metric("go_memstats_heap_inuse_bytes")

	// Start-up: every agent connects with nothing held → a full view each.
	actx, stopAgents := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopAgents()
	if err := s.startUp(ctx, actx, &wg, cps, tokens); err != nil {
		return err
	}
	time.Sleep(3 * time.Second) // let the start-up's garbage be collected
	if err := s.perNodeCost(primary, base, baseHeap); err != nil {
		return err
	}
	if p := s.f.nodeCostProfile; p != "" {
		// GC first, as the per-node heap reading above comes after one.
		if err := fetchProfile(ctx, "http://"+primary.http+"/debug/pprof/heap?gc=1", p+".heap"); err != nil {
			return err
		}
		if err := fetchProfile(ctx, "http://"+primary.http+"/debug/pprof/goroutine", p+".goroutine"); err != nil {
			return err
		}
	}
	if err := s.changes(ctx, w, cps); err != nil {
		return err
	}
	if err := s.localPolicy(ctx, cps); err != nil {
		return err
	}
	if err := s.sustained(ctx, w, cps, s.f.churnRate, s.f.churnFor); err != nil {
		return err
	}
	if err := s.failover(ctx, primary); err != nil {
		return err
	}
	secured, err := s.restart(ctx, c, cps, true)
	if err != nil {
		return err
	}
	plain, err := s.restart(ctx, c, cps, false)
	if err != nil {
		return err
	}
	s.add(mRestartSecuredOverInsecure, secured.Seconds()/plain.Seconds())
	fmt.Printf("restart: secured / insecure = %.3f\n", secured.Seconds()/plain.Seconds())
	var nacks int64
	for _, a := range s.agents {
		nacks += a.nacks.Load()
	}
	s.add(mNacks, float64(nacks))
	return nil
}

// add records one of the run's figures.
func (s *scaleSim) add(m *metric, v float64) {
	s.rep.add(sysScale, s.f.services, m, v)
}

// setUp starts a one-node secured cluster and loads the Services and the
// simulated agents' Nodes.
func (s *scaleSim) setUp(ctx context.Context) (*cluster.Cluster, *workload, error) {
	t := time.Now()
	cfg := s.f.clusterConfig(1, cluster.ProxyNone, s.log)
	cfg.Secure = true
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("start cluster: %w", err)
	}
	fmt.Printf("cluster up in %s (logs %s)\n", time.Since(t).Round(time.Millisecond), c.LogDir())
	fail := func(err error) (*cluster.Cluster, *workload, error) {
		_ = c.Close()
		return nil, nil, err
	}
	rc := c.RESTConfig()
	rc.QPS, rc.Burst = 5000, 10000
	if s.client, err = kubernetes.NewForConfig(rc); err != nil {
		return fail(err)
	}
	w := &workload{client: s.client, etcd: newEtcdLoader(c.EtcdURL()), writers: 4,
		eps: [2]netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11")}}
	if err := w.ensureNamespace(ctx); err != nil {
		return fail(err)
	}
	t = time.Now()
	if err := w.grow(ctx, s.f.services); err != nil {
		return fail(err)
	}
	if err := createNodes(ctx, s.client, s.f.agents, s.f.workers); err != nil {
		return fail(err)
	}
	fmt.Printf("%d Services, %d Nodes created in %s\n", s.f.services, s.f.agents, time.Since(t).Round(time.Millisecond))
	return c, w, nil
}

// credentials sets the control plane's security flags and makes each
// agent's Pod and bound token.
func (s *scaleSim) credentials(ctx context.Context, c *cluster.Cluster) ([]string, error) {
	t := time.Now()
	var err error
	if s.security, err = c.ControlPlaneSecurityArgs(ctx); err != nil {
		return nil, err
	}
	if s.f.reviewQPS != 0 {
		s.security = append(s.security, fmt.Sprintf("--token-review-qps=%g", s.f.reviewQPS))
	}
	if s.f.reviewBurst != 0 {
		s.security = append(s.security, fmt.Sprintf("--token-review-burst=%d", s.f.reviewBurst))
	}
	tokens, err := agentCredentials(ctx, s.client, s.f.agents, s.f.workers)
	if err != nil {
		return nil, err
	}
	fmt.Printf("%d agent Pods and bound tokens created in %s\n", s.f.agents, time.Since(t).Round(time.Millisecond))
	return tokens, nil
}

// startReplicas starts the primary, reads the CA it keeps, and starts the
// secondary; it returns those started even on error, for the caller to
// kill.
func (s *scaleSim) startReplicas(ctx context.Context, c *cluster.Cluster) ([]*controlPlane, error) {
	addrs, err := loopbackAddrs(4)
	if err != nil {
		return nil, err
	}
	primary, err := s.startControlPlane(ctx, c, "controlplane-a", addrs[0], addrs[1], true)
	if err != nil {
		return nil, err
	}
	cps := []*controlPlane{primary}
	ca, err := controlPlaneCA(ctx, s.client)
	if err != nil {
		return cps, err
	}
	s.caPool = ca
	s.ca.Store(ca)
	secondary, err := s.startControlPlane(ctx, c, "controlplane-b", addrs[2], addrs[3], true)
	if err != nil {
		return cps, err
	}
	return append(cps, secondary), nil
}

// startUp starts every simulated agent (they run until actx ends) and
// waits until each holds its full view.
func (s *scaleSim) startUp(ctx, actx context.Context, wg *sync.WaitGroup, cps []*controlPlane, tokens []string) error {
	for i := range s.f.agents {
		s.agents = append(s.agents, &simAgent{name: simNodeName(i), addrs: []string{cps[0].grpc, cps[1].grpc},
			token: tokens[i], source: simSourceIP(i), view: newAgentView(s.keys)})
	}
	adm0, err := s.admissionCounts(ctx)
	if err != nil {
		return err
	}
	t := time.Now()
	s.beginEpoch()
	for _, a := range s.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(actx, s)
		}()
	}
	if err := s.waitEpoch(ctx); err != nil {
		return fmt.Errorf("start-up: %w", err)
	}
	startup := s.lastInSince(t)
	s.add(mStartupConvergence, startup.Seconds())
	adm, err := s.addAdmission(ctx, sysScale, startupAdmission, adm0)
	if err != nil {
		return err
	}
	fmt.Printf("start-up: %d agents admitted and hold their full view %s after connecting; %s\n", len(s.agents), startup.Round(time.Millisecond), adm)
	return nil
}

// perNodeCost records what the connected nodes cost the primary: its RSS
// and heap now against before the agents came.
func (s *scaleSim) perNodeCost(primary *controlPlane, base usage, baseHeap float64) error {
	withAgents, err := readUsage(primary.cmd.Process.Pid)
	if err != nil {
		return err
	}
	heap, _ := primary.metric("go_memstats_heap_inuse_bytes")
	// Agents the primary deferred (reviews over its rate) went on to the
	// secondary: per node is per node the primary serves.
	served, err := primary.metric("doorman_controlplane_connected_nodes")
	if err != nil || served == 0 {
		return fmt.Errorf("no node connected to the primary: %w", err)
	}
	s.add(mNodesOnPrimary, served)
	s.add(mScaleControlPlaneRSS, float64(withAgents.RSSBytes))
	s.add(mControlPlanePeakRSS, float64(withAgents.PeakRSS))
	if self, err := readUsage(os.Getpid()); err == nil {
		s.add(mStartupHarnessPeakRSS, float64(self.PeakRSS))
		fmt.Printf("start-up: peak RSS of the primary %d MiB, of the harness %d MiB\n", withAgents.PeakRSS>>20, self.PeakRSS>>20)
	}
	s.add(mRSSPerNode, float64(withAgents.RSSBytes-base.RSSBytes)/served)
	if heap > 0 && baseHeap > 0 {
		s.add(mHeapPerNode, (heap-baseHeap)/served)
	}
	return nil
}

// changes measures single EndpointSlice changes, from the API write to
// every agent's ACK, and what the replicas serving them spent.
func (s *scaleSim) changes(ctx context.Context, w *workload, cps []*controlPlane) error {
	n := len(s.agents)
	add := s.add
	cpuBefore, err := cpuSeconds(cps)
	if err != nil {
		return err
	}
	sentBefore := metricSum(cps, "doorman_controlplane_stream_bytes_sent_total")
	var lastAck, agentP99 []time.Duration
	var bytesPer, msgsPer []float64
	for i := range s.f.changes {
		svc := (i*7919 + 101) % s.f.services
		ip := w.freshIP()
		ct := &changeTrack{marker: ip.String(), n: int64(n), done: make(chan struct{})}
		b0, m0 := s.traffic()
		s.change.Store(ct)
		ct.start = time.Now()
		if err := w.changeEndpoint(ctx, svc, ip); err != nil {
			return err
		}
		select {
		case <-ct.done:
		case <-time.After(s.f.timeout):
			return fmt.Errorf("change %d: %d of %d agents acked after %s", i, ct.acked.Load(), n, s.f.timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		ct.mu.Lock()
		lastAck = append(lastAck, percentile(ct.lats, 100))
		agentP99 = append(agentP99, percentile(ct.lats, 99))
		ct.mu.Unlock()
		time.Sleep(s.f.gap)
		b1, m1 := s.traffic()
		bytesPer = append(bytesPer, float64(b1-b0)/float64(n))
		msgsPer = append(msgsPer, float64(m1-m0)/float64(n))
	}
	s.change.Store(nil)
	cpuAfter, err := cpuSeconds(cps)
	if err != nil {
		return err
	}
	sentAfter := metricSum(cps, "doorman_controlplane_stream_bytes_sent_total")
	add(mScaleChangeP50, percentile(lastAck, 50).Seconds())
	add(mScaleChangeP99, percentile(lastAck, 99).Seconds())
	add(mChangeAgentP99, percentile(agentP99, 50).Seconds())
	add(mBytesPerChange, meanOf(bytesPer))
	add(mMessagesPerChange, meanOf(msgsPer))
	if sentAfter > sentBefore {
		add(mServerBytesPerChange, (sentAfter-sentBefore)/float64(s.f.changes*n))
	}
	add(mCPUPerChange, (cpuAfter-cpuBefore)/float64(s.f.changes))
	fmt.Printf("changes: last ACK p50 %s p99 %s (per-agent p99, median over changes: %s), %.0f bytes and %.2f messages per change per node\n",
		percentile(lastAck, 50).Round(time.Millisecond), percentile(lastAck, 99).Round(time.Millisecond),
		percentile(agentP99, 50).Round(time.Millisecond), meanOf(bytesPer), meanOf(msgsPer))
	return nil
}

// failover kills the primary; its agents move to the other replica, which
// has not admitted them yet.
func (s *scaleSim) failover(ctx context.Context, primary *controlPlane) error {
	n := len(s.agents)
	add := s.add
	fulls0, upserts0 := s.received()
	adm0, err := s.admissionCounts(ctx)
	if err != nil {
		return err
	}
	b0, _ := s.traffic()
	s.beginEpoch()
	t := time.Now()
	// Agents the primary deferred at start-up are served by the other
	// replica already: the kill does not move them.
	stayed := 0
	for _, a := range s.agents {
		if addr := a.serving.Load(); addr != nil && *addr != primary.grpc {
			s.in(a)
			stayed++
		}
	}
	primary.kill()
	if err := s.waitEpoch(ctx); err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	failover := s.lastInSince(t)
	b1, _ := s.traffic()
	fulls1, upserts1 := s.received()
	add(mFailoverConvergence, failover.Seconds())
	moved := max(n-stayed, 1)
	add(mFailoverBytesPerNode, float64(b1-b0)/float64(moved))
	add(mFailoverFullViews, float64(fulls1-fulls0))
	add(mFailoverUpserts, float64(upserts1-upserts0))
	add(mFailoverAgentsMoved, float64(n-stayed))
	adm, err := s.addAdmission(ctx, sysScale, failoverAdmission, adm0)
	if err != nil {
		return err
	}
	fmt.Printf("failover: the primary's %d agents admitted and re-acked on the other replica %s after the kill; %.0f bytes per moved node, %d full views, %d upserts; %s\n",
		n-stayed, failover.Round(time.Millisecond), float64(b1-b0)/float64(moved), fulls1-fulls0, upserts1-upserts0, adm)
	return nil
}

// restart kills every replica and starts each again on its addresses,
// secured or --insecure, and returns the time from the kill until every
// agent was admitted and acked again. The agents keep what they hold and
// resume by digests, with replicas whose admission caches are empty.
func (s *scaleSim) restart(ctx context.Context, c *cluster.Cluster, cps []*controlPlane, secure bool) (time.Duration, error) {
	sys, mode := sysScale, "secured"
	if !secure {
		sys, mode = sysScaleInsecure, "insecure"
	}
	add := func(m *metric, v float64) { s.rep.add(sys, s.f.services, m, v) }
	fulls0, upserts0 := s.received()
	ca := s.caPool
	if !secure {
		ca = nil
	}
	if secure && s.f.restartProfile != "" {
		stop, err := startCPUProfile(s.f.restartProfile)
		if err != nil {
			return 0, err
		}
		defer stop()
	}
	s.beginEpoch()
	t := time.Now()
	for _, cp := range cps {
		cp.kill()
	}
	if secure && s.f.replicaProfile != "" {
		profiled := make(chan error, 1)
		go func() { profiled <- fetchCPUProfile(ctx, cps[0].http, 5*time.Second, s.f.replicaProfile) }()
		defer func() {
			if err := <-profiled; err != nil {
				fmt.Printf("restart (secured): no replica profile: %v\n", err)
			}
		}()
	}
	s.ca.Store(ca) // agents' next connections
	// Counted once the old replicas are gone: reviews they had sent are
	// not this restart's.
	adm0, err := s.admissionCounts(ctx)
	if err != nil {
		return 0, err
	}
	var g errgroup.Group
	for i, cp := range cps {
		g.Go(func() error {
			started, err := s.startControlPlane(ctx, c, cp.name, cp.grpc, cp.http, secure)
			if err == nil {
				cps[i] = started
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("restart: %w", err)
	}
	ready := time.Since(t)
	if err := s.waitEpoch(ctx); err != nil {
		return 0, fmt.Errorf("restart (%s): %w", mode, err)
	}
	d := s.lastInSince(t)
	fulls1, upserts1 := s.received()
	var peak int64
	for _, cp := range cps {
		if u, err := readUsage(cp.cmd.Process.Pid); err == nil {
			peak = max(peak, u.PeakRSS)
		}
	}
	add(mRestartPeakRSS, float64(peak))
	add(mRestartConvergence, d.Seconds())
	add(mRestartReady, ready.Seconds())
	add(mRestartFullViews, float64(fulls1-fulls0))
	add(mRestartUpserts, float64(upserts1-upserts0))
	adm, err := s.addAdmission(ctx, sys, restartAdmission, adm0)
	if err != nil {
		return 0, err
	}
	fmt.Printf("restart (%s): every agent admitted and acked %s after both replicas were killed (ready after %s); %d full views; replica peak RSS %d MiB; %s\n",
		mode, d.Round(time.Millisecond), ready.Round(time.Millisecond), fulls1-fulls0, peak>>20, adm)
	return d, nil
}

func meanOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func (s *scaleSim) traffic() (bytes, msgs int64) {
	for _, a := range s.agents {
		bytes += a.bytes.Load()
		msgs += a.msgs.Load()
	}
	return bytes, msgs
}

// received is the full views and upserts every agent received so far.
func (s *scaleSim) received() (fulls, upserts int64) {
	for _, a := range s.agents {
		fulls += a.fulls.Load()
		upserts += a.upserts.Load()
	}
	return fulls, upserts
}

func (s *scaleSim) beginEpoch() {
	s.inMu.Lock()
	s.allIn = make(chan struct{})
	s.synced.Store(0)
	s.inMu.Unlock()
	s.epoch.Add(1)
}

// in counts an agent in the current epoch, once.
func (s *scaleSim) in(a *simAgent) {
	if e := s.epoch.Load(); a.epoch.Swap(e) != e {
		s.inMu.Lock()
		s.lastIn = time.Now()
		if s.synced.Add(1) == int64(len(s.agents)) {
			close(s.allIn)
		}
		s.inMu.Unlock()
	}
}

// acked is called by an agent after each Ack it sent.
func (s *scaleSim) acked(a *simAgent, u *doormanv1.SyncResponse) {
	s.in(a)
	if c := s.churn.Load(); c != nil {
		c.seen(u)
	}
	ct := s.change.Load()
	if ct == nil {
		return
	}
	if ct.match != nil {
		if ct.match(u) {
			ct.record()
		}
		return
	}
	for _, e := range u.GetUpserts() {
		for _, ep := range e.GetServicePort().GetEndpoints() {
			if ep.GetIp() == ct.marker {
				ct.record()
				return
			}
		}
	}
}

// record counts one agent's ACK of the change.
func (ct *changeTrack) record() {
	d := time.Since(ct.start)
	ct.mu.Lock()
	ct.lats = append(ct.lats, d)
	ct.mu.Unlock()
	if ct.acked.Add(1) == ct.n {
		close(ct.done)
	}
}

func (s *scaleSim) waitEpoch(ctx context.Context) error {
	s.inMu.Lock()
	ch := s.allIn
	s.inMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-time.After(s.f.timeout):
		return fmt.Errorf("%d of %d agents acked after %s", s.synced.Load(), len(s.agents), s.f.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *scaleSim) lastInSince(t time.Time) time.Duration {
	s.inMu.Lock()
	defer s.inMu.Unlock()
	return s.lastIn.Sub(t)
}

func simNodeName(i int) string { return fmt.Sprintf("sim-%05d", i) }

// createNodes registers the simulated agents' Node objects, so each view
// holds a node entry as a real node's does.
func createNodes(ctx context.Context, client kubernetes.Interface, n, workers int) error {
	return forEachParallel(ctx, n, workers, func(ctx context.Context, i int) error {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: simNodeName(i), Labels: map[string]string{"kubernetes.io/hostname": simNodeName(i)}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.252.%d.%d", i/250, i%250+1)},
			}},
		}
		_, err := retryCreate(ctx, func() (*corev1.Node, error) {
			return client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", node.Name, err)
		}
		return nil
	})
}

// retryCreate retries a create the API server throttled.
func retryCreate[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err == nil || !apierrors.IsTooManyRequests(err) && !apierrors.IsServerTimeout(err) && !apierrors.IsTimeout(err) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// simAgent is one simulated node agent: a real gRPC client of
// AgentService.Sync that applies updates to an agentView and acks them.
type simAgent struct {
	name   string
	addrs  []string
	token  string // bound to the agent's Pod on its node
	source net.IP // its address on loopback
	view   *agentView
	epoch  atomic.Int64
	// serving is the address of the control plane the agent's stream
	// acked an update on, while that stream lasts.
	serving atomic.Pointer[string]

	bytes, msgs    atomic.Int64 // received on the wire
	fulls, upserts atomic.Int64
	nacks          atomic.Int64
}

// run keeps a stream open to one of the control planes in turn, as the
// agent does: each stream on a connection of its own, dialled for it and
// closed after it (a connection kept across streams would carry gRPC's
// reconnection backoff from one to the next, which the agent never
// waits for); after a stream ends it waits the agent's backoff, reset
// once a stream got an update acked. The connection is TLS or plaintext
// as the control plane's mode is when it is dialled.
func (a *simAgent) run(ctx context.Context, s *scaleSim) {
	failures := 0
	for i := 0; ctx.Err() == nil; i = (i + 1) % len(a.addrs) {
		cc, err := grpc.NewClient(a.addrs[i], a.dialOptions(s.ca.Load())...)
		if err != nil {
			s.log.Error("dial", "node", a.name, "error", err)
			return
		}
		acked, err := a.session(ctx, cc, s)
		_ = cc.Close()
		if ctx.Err() != nil {
			return
		}
		if acked {
			failures = 0
		}
		delay := agentBackoff(failures)
		failures = min(failures+1, 32)
		s.log.Debug("stream ended", "node", a.name, "address", a.addrs[i], "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// session runs one Sync stream and reports whether it acked an update.
func (a *simAgent) session(ctx context.Context, cc *grpc.ClientConn, s *scaleSim) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hello := &doormanv1.Hello{NodeName: a.name, Holding: a.view.holding(), Protocol: version.Protocol, AgentVersion: version.Get().String()}
	release, err := s.awaitFullView(ctx, hello)
	if err != nil {
		return false, err
	}
	defer release()
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(ctx)
	if err != nil {
		return false, err
	}
	// A stream the control plane refused fails Send with io.EOF; its
	// status comes with Recv.
	if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: hello}}); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	defer a.serving.Store(nil)
	got, acked := false, false
	for {
		u, err := stream.Recv()
		if err != nil {
			if !got {
				s.firstRecv[min(status.Code(err), codes.Unauthenticated)].Add(1)
			}
			return acked, err
		}
		got = true
		if u.GetFull() {
			a.fulls.Add(1)
		}
		a.upserts.Add(int64(len(u.GetUpserts())))
		if err := a.view.apply(u); err != nil {
			a.nacks.Add(1)
			s.log.Warn("nack", "node", a.name, "error", err)
			if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: u.GetVersion(), Error: err.Error()}}}); err != nil {
				return acked, err
			}
			continue
		}
		ack := &doormanv1.Ack{Version: u.GetVersion(), ViewDigest: a.view.d.View()}
		if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: ack}}); err != nil {
			return acked, err
		}
		if !acked {
			acked = true
			release()
			target := cc.Target()
			a.serving.Store(&target)
		}
		s.acked(a, u)
	}
}

// awaitFullView waits, before an agent that holds nothing opens its
// stream, until fewer than fullViews such agents are receiving their
// full view. release, called once the first update is acked or the
// stream ended, lets the next one in; it may be called more than once.
func (s *scaleSim) awaitFullView(ctx context.Context, hello *doormanv1.Hello) (release func(), err error) {
	if s.fullViews == nil || hello.GetHolding() != nil {
		return func() {}, nil
	}
	if err := s.fullViews.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { s.fullViews.Release(1) }) }, nil
}

// agentStats counts what an agent receives on the wire.
type agentStats struct{ a *simAgent }

func (h agentStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h agentStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	if in, ok := st.(*stats.InPayload); ok {
		h.a.bytes.Add(int64(in.WireLength))
		h.a.msgs.Add(1)
	}
}
func (h agentStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h agentStats) HandleConn(context.Context, stats.ConnStats)                       {}
