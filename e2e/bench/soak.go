package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/promtext"
)

// soakFlags are the flags of "bench soak".
type soakFlags struct {
	common
	services  int
	duration  time.Duration
	rate      float64
	sample    time.Duration
	warmup    time.Duration
	window    time.Duration
	maxGrowth float64
	logLimit  int
}

// runSoak runs doorman for a long time under endpoint churn, with an agent
// restart and a control-plane failover in the middle, and checks that
// neither binary grows (RSS, goroutines) and that no update was lost.
func runSoak(ctx context.Context, args []string) error {
	var f soakFlags
	fs := f.flagSet("bench soak", "soak.png", "controlplane and nodeagent")
	fs.IntVar(&f.services, "services", 10000, "Services")
	fs.DurationVar(&f.duration, "duration", 30*time.Minute, "length of the churn")
	fs.Float64Var(&f.rate, "rate", 50, "endpoint changes per second")
	fs.DurationVar(&f.sample, "sample", 30*time.Second, "time between two readings of each process")
	fs.DurationVar(&f.warmup, "warmup", 5*time.Minute, "time after the start (and after the middle's events) before growth is measured")
	fs.DurationVar(&f.window, "window", 2*time.Minute, "readings averaged at each end of a phase (a Go process's RSS moves with every collection)")
	fs.Float64Var(&f.maxGrowth, "max-growth", 0.05, "largest growth of RSS or goroutines allowed between a phase's first and last readings")
	fs.IntVar(&f.logLimit, "change-log-limit", 4096, "the control planes' --change-log-limit: their change log grows until it holds this many records, which must happen within the warm-up for growth to mean a leak (65,536, the default, takes 22 minutes at 50 changes/s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := f.prepare(); err != nil {
		return err
	}
	s := &soak{f: f, log: f.logger(), series: map[string]*procSeries{}}
	runErr := s.run(ctx)
	if s.series != nil && f.plot != "" {
		if err := writePlot(f.plot, s.panels()); err != nil {
			return errors.Join(runErr, err)
		}
	}
	return runErr
}

// soak is one run: the cluster, its workload and what was read.
type soak struct {
	f       soakFlags
	log     hclog.Logger
	c       *cluster.Cluster
	w       *workload
	replica *cluster.Replica
	start   time.Time

	mu     sync.Mutex
	series map[string]*procSeries // by process name
	// middle: when the middle's events began and ended.
	middle [2]time.Duration
}

// procSeries is one process's readings over the run.
type procSeries struct {
	at         []time.Duration // since the churn started
	rss        []float64       // bytes
	goroutines []float64
	heapGoal   []float64 // bytes: go_memstats_next_gc_bytes
	peakRSS    []float64 // bytes: the most RSS the process had so far
	// Where RSS is, in bytes: anonymous and file-backed pages (from /proc),
	// the heap's spans in use, and the idle heap not yet given back to the
	// kernel (from the Go runtime's metrics).
	rssAnon, rssFile, heapInuse, heapRetained []float64
}

func (s *soak) run(ctx context.Context) error {
	if err := s.setUp(ctx); err != nil {
		return err
	}
	defer func() { _ = s.c.Close() }()
	defer s.replica.Stop()

	fmt.Printf("churn: %.0f changes/s over %d Services for %s\n", s.f.rate, s.f.services, s.f.duration)
	s.start = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	churned := make(chan churnResult, 1)
	wg.Add(2)
	go func() { defer wg.Done(); churned <- s.churn(ctx) }()
	go func() { defer wg.Done(); s.sampleEvery(ctx) }()

	middle := s.f.duration / 2
	mid := time.NewTimer(middle)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-mid.C:
	}
	if err := s.middleEvents(ctx); err != nil {
		return err
	}
	res := <-churned
	cancel()
	wg.Wait()
	if res.err != nil {
		return fmt.Errorf("churn: %w", res.err)
	}
	fmt.Printf("churn done: %d changes in %s (%.1f/s)\n", res.changes, res.took.Round(time.Second), float64(res.changes)/res.took.Seconds())
	return errors.Join(s.checkLost(context.Background()), s.checkGrowth())
}

// setUp starts a cluster with doorman on every node and a second
// control-plane replica, and loads the Services.
func (s *soak) setUp(ctx context.Context) error {
	t := time.Now()
	cfg := s.f.clusterConfig(3, cluster.ProxyDoorman, s.log)
	// Both replicas, tried in turn (the last --control-plane counts).
	cfg.AgentArgs = []string{"--control-plane=" + net.JoinHostPort(cluster.GatewayIP, strconv.Itoa(cluster.ControlPlanePort)) + "," +
		net.JoinHostPort(cluster.GatewayIP, strconv.Itoa(cluster.ControlPlaneReplicaPort))}
	cfg.ControlPlaneArgs = []string{"--change-log-limit=" + strconv.Itoa(s.f.logLimit)}
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	s.c = c
	fmt.Printf("cluster up in %s (prefix %s, logs %s)\n", time.Since(t).Round(time.Millisecond), c.Prefix(), c.LogDir())
	if err := s.load(ctx); err != nil {
		_ = c.Close()
		return err
	}
	if s.replica, err = c.StartControlPlaneReplica(ctx); err != nil {
		_ = c.Close()
		return fmt.Errorf("second control-plane replica: %w", err)
	}
	return nil
}

func (s *soak) load(ctx context.Context) error {
	rc := s.c.RESTConfig()
	rc.QPS, rc.Burst = 5000, 10000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	s.w = &workload{client: client, etcd: newEtcdLoader(s.c.EtcdURL()), writers: 4}
	if err := s.w.ensureNamespace(ctx); err != nil {
		return err
	}
	for i := range benchEndpoints {
		if s.w.eps[i], err = startPod(ctx, client, fmt.Sprintf("echo-%d", i), s.c.Nodes()[i%len(s.c.Nodes())].Name); err != nil {
			return err
		}
	}
	t := time.Now()
	if err := s.w.grow(ctx, s.f.services); err != nil {
		return fmt.Errorf("create %d services: %w", s.f.services, err)
	}
	// The Services went straight into etcd, 42 to a transaction, so many
	// objects share one resourceVersion, which the API server never
	// does: a watch resumed from that version would skip the rest of
	// its objects. The control plane lists them afresh.
	if err := s.c.StopControlPlane(); err != nil {
		return err
	}
	if err := s.c.StartControlPlane(ctx); err != nil {
		return err
	}
	if err := s.converged(ctx, s.c.ControlPlaneGRPC(), 5*time.Minute); err != nil {
		return err
	}
	fmt.Printf("%d Services loaded and on every node in %s\n", s.f.services, time.Since(t).Round(time.Millisecond))
	return nil
}

type churnResult struct {
	changes int
	took    time.Duration
	err     error
}

// churn replaces one endpoint of a Service at the flags' rate until the
// duration is over.
func (s *soak) churn(ctx context.Context) churnResult {
	tick := time.NewTicker(time.Duration(float64(time.Second) / s.f.rate))
	defer tick.Stop()
	end := time.After(s.f.duration)
	var n int
	for {
		select {
		case <-ctx.Done():
			return churnResult{changes: n, took: time.Since(s.start), err: ctx.Err()}
		case <-end:
			return churnResult{changes: n, took: time.Since(s.start)}
		case <-tick.C:
		}
		if err := s.w.changeEndpoint(ctx, changeTarget(n, 557, s.f.services), s.w.freshIP()); err != nil {
			return churnResult{changes: n, took: time.Since(s.start), err: err}
		}
		n++
	}
}

// middleEvents restarts the first node's agent, then stops the primary
// control plane so that every agent fails over to the replica, and starts
// it again as the standby.
func (s *soak) middleEvents(ctx context.Context) error {
	s.mu.Lock()
	s.middle[0] = time.Since(s.start)
	s.mu.Unlock()
	node := s.c.Nodes()[0].Name
	s.c.StopAgent(node)
	if err := s.c.StartAgent(node); err != nil {
		return fmt.Errorf("restart agent on %s: %w", node, err)
	}
	fmt.Printf("%s: agent on %s restarted\n", time.Since(s.start).Round(time.Second), node)
	if err := s.c.StopControlPlane(); err != nil {
		return fmt.Errorf("stop the primary control plane: %w", err)
	}
	if err := s.waitConnected(ctx, s.replica.GRPC, time.Minute); err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	if err := s.c.StartControlPlane(ctx); err != nil {
		return fmt.Errorf("start the first control plane again: %w", err)
	}
	fmt.Printf("%s: every agent failed over to the replica; the first control plane is the standby\n", time.Since(s.start).Round(time.Second))
	s.mu.Lock()
	s.middle[1] = time.Since(s.start)
	s.mu.Unlock()
	return nil
}

// sampleEvery reads each running process's RSS and goroutines from its
// /metrics every sample interval.
func (s *soak) sampleEvery(ctx context.Context) {
	_ = wait.PollUntilContextCancel(ctx, s.f.sample, true, func(ctx context.Context) (bool, error) {
		at := time.Since(s.start)
		for name, read := range s.processes() {
			m, err := read(ctx)
			if err != nil {
				s.log.Debug("no reading", "process", name, "error", err)
				continue
			}
			r := reading{
				rss: m["process_resident_memory_bytes"], goroutines: m["go_goroutines"], heapGoal: m["go_memstats_next_gc_bytes"],
				heapInuse: m["go_memstats_heap_inuse_bytes"], heapRetained: m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"],
			}
			if pid := s.pid(name); pid != 0 {
				if u, err := readUsage(pid); err == nil {
					r.peakRSS, r.rssAnon, r.rssFile = float64(u.PeakRSS), float64(u.RSSAnon), float64(u.RSSFile)
				}
			}
			s.record(name, at, r)
		}
		return false, nil
	})
}

// processes names each process of doorman and how to read its metrics.
func (s *soak) processes() map[string]func(context.Context) (map[string]float64, error) {
	out := map[string]func(context.Context) (map[string]float64, error){
		"controlplane-1": func(ctx context.Context) (map[string]float64, error) {
			return scrapeHTTP(ctx, s.c.ControlPlaneHTTP())
		},
		"controlplane-2": func(ctx context.Context) (map[string]float64, error) {
			return scrapeHTTP(ctx, s.replica.HTTP)
		},
	}
	for _, n := range s.c.Nodes() {
		out["agent-"+n.Name] = func(ctx context.Context) (map[string]float64, error) {
			return s.c.AgentMetrics(ctx, n.Name)
		}
	}
	return out
}

// pid is the pid of the process processes names name, 0 when it is not
// running.
func (s *soak) pid(name string) int {
	switch name {
	case "controlplane-1":
		return s.c.ControlPlanePID()
	case "controlplane-2":
		return s.replica.PID()
	}
	return s.c.AgentPID(strings.TrimPrefix(name, "agent-"))
}

func scrapeHTTP(ctx context.Context, addr string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: %s", addr, resp.Status)
	}
	return promtext.Sums(resp.Body)
}

// reading is one sample of a process.
type reading struct {
	rss, goroutines, heapGoal float64
	peakRSS                   float64 // VmHWM; 0 when /proc could not say
	rssAnon, rssFile          float64 // 0 when /proc could not say
	heapInuse, heapRetained   float64
}

func (s *soak) record(name string, at time.Duration, r reading) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.series[name]
	if p == nil {
		p = &procSeries{}
		s.series[name] = p
	}
	p.at = append(p.at, at)
	p.rss = append(p.rss, r.rss)
	p.goroutines = append(p.goroutines, r.goroutines)
	p.heapGoal = append(p.heapGoal, r.heapGoal)
	p.peakRSS = append(p.peakRSS, r.peakRSS)
	p.rssAnon = append(p.rssAnon, r.rssAnon)
	p.rssFile = append(p.rssFile, r.rssFile)
	p.heapInuse = append(p.heapInuse, r.heapInuse)
	p.heapRetained = append(p.heapRetained, r.heapRetained)
}
