package provider

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// StartTimeout bounds a test package's start-up: the cluster coming up and
// its workload being created.
const StartTimeout = 5 * time.Minute

// Tests are a test package's tests: *testing.M.
type Tests interface{ Run() int }

// Package says how a test package gets the cluster all its tests share.
// Run starts it, runs the tests and tears it down.
type Package[C io.Closer] struct {
	// Name begins every message ("faults", "e2e/security").
	Name string
	// NeedsRoot makes Run fail, not skip, when not root; NotRoot is the
	// message then (default: the netns cluster needs root).
	NeedsRoot bool
	NotRoot   string
	// Binaries finds or builds doorman's controlplane and nodeagent
	// (cluster.DoormanBinaries) before Start; they are in Env.
	Binaries bool
	// LogInfo logs the cluster's lifecycle at Info even without -v.
	LogInfo bool
	// Start brings the cluster up; ctx ends after StartTimeout.
	Start func(ctx context.Context, env Env) (C, error)
	// Setup (optional) creates the package's workload in the started
	// cluster, within the same StartTimeout.
	Setup func(ctx context.Context, c C) error
	// Done (optional) sees the tests' exit code before the cluster is
	// torn down and returns the package's.
	Done func(c C, code int) int
}

// Env is what Run hands to Start.
type Env struct {
	Log           hclog.Logger
	DoormanBinDir string // "" unless Package.Binaries
}

// Run is a test package's TestMain body: it checks for root, finds
// doorman's binaries, starts the cluster and the workload, runs the tests
// and tears the cluster down, also on SIGINT or SIGTERM (exit status 130).
// It returns the exit code.
func Run[C io.Closer](m Tests, p Package[C]) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if p.NeedsRoot && os.Geteuid() != 0 {
		p.say(p.notRoot())
		return 1
	}
	env := Env{Log: p.logger()}
	if p.Binaries {
		dir, cleanup, err := cluster.DoormanBinaries()
		if err != nil {
			p.say(err)
			return 1
		}
		defer cleanup()
		env.DoormanBinDir = dir
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	td := &teardown{ready: make(chan struct{})}
	interrupted := make(chan struct{})
	stop := onSignal(func() {
		p.say("interrupted, tearing the cluster down")
		close(interrupted)
		cancel()
		_ = td.close()
		os.Exit(130)
	})
	defer stop()
	c, err := p.Start(ctx, env)
	if err != nil {
		td.set(nil)
		select {
		case <-interrupted:
			select {} // the signal handler exits
		default:
		}
		p.say("start cluster:", err)
		return 1
	}
	td.set(c)
	code := p.runTests(ctx, m, c)
	if err := td.close(); err != nil {
		p.say("tear down:", err)
	}
	return code
}

// runTests sets the workload up and runs the tests in the started cluster.
func (p Package[C]) runTests(ctx context.Context, m Tests, c C) int {
	if p.Setup != nil {
		if err := p.Setup(ctx, c); err != nil {
			p.say("workload:", err)
			return 1
		}
	}
	code := m.Run()
	if p.Done != nil {
		code = p.Done(c, code)
	}
	return code
}

func (p Package[C]) say(a ...any) {
	fmt.Fprintln(os.Stderr, append([]any{p.Name + ":"}, a...)...)
}

func (p Package[C]) notRoot() string {
	if p.NotRoot != "" {
		return p.NotRoot
	}
	return "the netns cluster needs root (it creates network namespaces); run the tests as root"
}

// logger logs at Warn, or at Info with -v or LogInfo.
func (p Package[C]) logger() hclog.Logger {
	level := hclog.Warn
	if p.LogInfo || testing.Verbose() {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Name: p.Name, Level: level})
}

// teardown closes the cluster once, from the tests' end or a signal,
// whichever comes first; a signal during start-up waits for Start to
// return (its context cancelled) so that what it started is closed too.
type teardown struct {
	ready chan struct{}
	c     io.Closer // nil when Start failed
	once  sync.Once
	err   error
}

func (t *teardown) set(c io.Closer) {
	t.c = c
	close(t.ready)
}

func (t *teardown) close() error {
	<-t.ready
	t.once.Do(func() {
		if t.c != nil {
			t.err = t.c.Close()
		}
	})
	return t.err
}

// onSignal calls f on the first SIGINT or SIGTERM until stop is called.
func onSignal(f func()) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		if _, ok := <-sigs; ok {
			f()
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(sigs)
	}
}

// RunCluster is Run for a package whose tests share a netns cluster of
// their own, started from cfg: doorman's binaries, the Kubernetes
// binaries (DefaultK8sBinDir) and the logger are filled in when cfg leaves
// them empty, and DOORMAN_E2E_KEEP keeps the work directory. setup
// (optional) creates the package's workload; the log directory is named
// when a test failed.
func RunCluster(m Tests, name string, cfg cluster.Config, setup func(ctx context.Context, c *cluster.Cluster) error) int {
	return Run(m, Package[*cluster.Cluster]{
		Name:      name,
		NeedsRoot: true,
		Binaries:  cfg.DoormanBinDir == "" && (cfg.Proxy == "" || cfg.Proxy == cluster.ProxyDoorman),
		Start: func(ctx context.Context, env Env) (*cluster.Cluster, error) {
			if cfg.K8sBinDir == "" {
				cfg.K8sBinDir = DefaultK8sBinDir()
			}
			if cfg.DoormanBinDir == "" {
				cfg.DoormanBinDir = env.DoormanBinDir
			}
			if cfg.Logger == nil {
				cfg.Logger = env.Log
			}
			cfg.KeepWorkDir = cfg.KeepWorkDir || os.Getenv("DOORMAN_E2E_KEEP") != ""
			return cluster.Start(ctx, cfg)
		},
		Setup: setup,
		Done: func(c *cluster.Cluster, code int) int {
			if code != 0 {
				fmt.Fprintln(os.Stderr, name+": logs in", c.LogDir())
			}
			return code
		},
	})
}
