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
	default:
		return fmt.Errorf("unknown command %q: want proxy (default), scale or soak", cmd)
	}
}

// common are the flags both commands take.
type common struct {
	full     bool
	out      string
	plot     string
	k8sBin   string
	logLevel string
	prefix   string
	keep     bool
}

func (c *common) register(fs *flag.FlagSet, plot string) {
	home, _ := os.UserHomeDir()
	cache := os.Getenv("DOORMAN_CACHE")
	if cache == "" {
		cache = filepath.Join(home, ".cache", "doorman")
	}
	fs.BoolVar(&c.full, "full", false, "the full sizes instead of the quick ones")
	fs.StringVar(&c.out, "out", os.Getenv("BENCH_OUT"), "JSON records file (default $BENCH_OUT; empty: none)")
	fs.StringVar(&c.plot, "plot", plot, "PNG plot file (empty: none)")
	fs.StringVar(&c.k8sBin, "k8s-bin", filepath.Join(cache, "k8s-v1.36.3", "bin"), "etcd, kube-apiserver, kube-controller-manager, kube-proxy (e2e/hack/build-k8s.sh)")
	fs.StringVar(&c.logLevel, "log-level", "warn", "trace, debug, info, warn or error")
	fs.StringVar(&c.prefix, "prefix", "", "network namespace prefix (default: random)")
	fs.BoolVar(&c.keep, "keep", false, "keep the cluster's work directory (logs, etcd data) after the run")
}

func (c *common) logger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.LevelFromString(c.logLevel)})
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("run as root: the cluster lives in network namespaces")
	}
	return nil
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
