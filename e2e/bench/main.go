package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cmd := "proxy"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "proxy":
		return runProxy(ctx, args)
	case "scale":
		return runScale(ctx, args)
	case "soak":
		return runSoak(ctx, args)
	case "plot":
		return runPlot(args)
	default:
		return fmt.Errorf("unknown command %q: want proxy (default), scale, soak or plot", cmd)
	}
}

// common are the flags every command takes.
type common struct {
	full       bool
	out        string
	plot       string
	k8sBin     string
	doormanBin string
	logLevel   string
	prefix     string
	keep       bool
}

// flagSet is the flag set of the command name, the common flags defined
// on it: plot is -plot's default, binaries what -doorman-bin holds.
func (c *common) flagSet(name, plot, binaries string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	home, _ := os.UserHomeDir()
	cache := os.Getenv("DOORMAN_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "doorman")
	}
	fs.BoolVar(&c.full, "full", false, "the full sizes instead of the quick ones")
	fs.StringVar(&c.out, "out", os.Getenv("BENCH_OUT"), "JSON records file (default $BENCH_OUT; empty: none)")
	fs.StringVar(&c.plot, "plot", plot, "PNG plot file (empty: none)")
	fs.StringVar(&c.k8sBin, "k8s-bin", filepath.Join(cache, "k8s-v1.36.3", "bin"), "etcd, kube-apiserver, kube-controller-manager, kube-proxy (e2e/hack/build-k8s.sh)")
	fs.StringVar(&c.doormanBin, "doorman-bin", "bin", "directory holding "+binaries)
	fs.StringVar(&c.logLevel, "log-level", "warn", "trace, debug, info, warn or error")
	fs.StringVar(&c.prefix, "prefix", "", "network namespace prefix (default: random)")
	fs.BoolVar(&c.keep, "keep", false, "keep the cluster's work directory (logs, etcd data) after the run")
	return fs
}

func (c *common) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.LevelFromString(c.logLevel)})
}

// prepare checks that the run can start (as root) and makes -doorman-bin
// absolute.
func (c *common) prepare() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the cluster lives in network namespaces")
	}
	var err error
	c.doormanBin, err = filepath.Abs(c.doormanBin)
	return err
}

// clusterConfig is the cluster of nodes nodes, with proxy on them, as the
// common flags ask for it.
func (c *common) clusterConfig(nodes int, proxy cluster.Proxy, log hclog.Logger) cluster.Config {
	return cluster.Config{
		Nodes:         nodes,
		Prefix:        c.prefix,
		K8sBinDir:     c.k8sBin,
		DoormanBinDir: c.doormanBin,
		Proxy:         proxy,
		Logger:        log,
		KeepWorkDir:   c.keep,
		Controllers:   benchControllers,
	}
}

// writeResults writes rep's records (-out) and systems' plot, the panels
// of view plot (-plot), and says where; runErr, the run's own error, is returned
// with any of theirs.
func (c *common) writeResults(rep *report, systems []string, plot view, runErr error) error {
	if err := rep.writeJSON(c.out); err != nil {
		return errors.Join(runErr, err)
	}
	if c.plot != "" {
		if err := writePlot(c.plot, plotPanels(rep, systems, plot)); err != nil {
			return errors.Join(runErr, err)
		}
		fmt.Println("plot:", c.plot)
	}
	if c.out != "" {
		fmt.Println("records:", c.out)
	}
	return runErr
}

// sizes parses "1000,10000".
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("size %q: want a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
