//go:build e2e

package suite

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
)

var (
	flagProvider = flag.String("e2e.provider", "", "netns (default) or kind (needs KUBECONFIG); env DOORMAN_E2E_PROVIDER")
	flagNodes    = flag.Int("e2e.nodes", 3, "nodes of the netns cluster")
	flagServices = flag.Int("e2e.services", 1000, "Services of the scale case")
	flagProxy    = flag.String("e2e.proxy", "doorman", "what implements Services on netns nodes: doorman, kube-proxy or none")
	flagKeep     = flag.Bool("e2e.keep-workdir", false, "keep the netns cluster's work dir (logs, kubeconfig)")
	flagVerbose  = flag.Bool("e2e.log", false, "log the cluster's lifecycle")
)

// prov is the cluster every test runs against.
var prov provider.Provider

// doormanBinDir holds the controlplane and nodeagent binaries the netns
// cluster runs ("" on other providers); a test that needs a cluster of its
// own (other control-plane flags) starts one from them.
var doormanBinDir string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	name := provider.Selected(*flagProvider)
	level := hclog.Warn
	if *flagVerbose || testing.Verbose() {
		level = hclog.Info
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "e2e", Level: level})
	opts := provider.NetNSOptions{
		Nodes:       *flagNodes,
		Proxy:       cluster.Proxy(*flagProxy),
		KeepWorkDir: *flagKeep,
		Logger:      log,
	}
	if name == "netns" {
		if os.Geteuid() != 0 {
			fmt.Fprintln(os.Stderr, "e2e: the netns provider needs root (it creates network namespaces); run the suite as root, or against kind with DOORMAN_E2E_PROVIDER=kind KUBECONFIG=…")
			return 1
		}
		if opts.Proxy == cluster.ProxyDoorman {
			dir, cleanup, err := cluster.DoormanBinaries()
			if err != nil {
				fmt.Fprintln(os.Stderr, "e2e:", err)
				return 1
			}
			defer cleanup()
			opts.DoormanBinDir = dir
			doormanBinDir = dir
		}
	}
	// Ctrl-C, during start-up or tests: tear the cluster down before dying.
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	started := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintln(os.Stderr, "e2e: interrupted, tearing the cluster down")
		cancel()
		<-started
		if prov != nil {
			_ = prov.Close()
		}
		os.Exit(130)
	}()
	// The kind provider starts a dialer Pod per node and needs root for its
	// external client, as netns does.
	p, err := provider.Open(startCtx, name, opts)
	if err == nil {
		prov = p
	}
	close(started)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start provider:", err)
		return 1
	}
	code := m.Run()
	if err := p.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: tear down:", err)
	}
	if !summarize(os.Stdout, p.Name()) {
		fmt.Fprintln(os.Stderr, "e2e: no test ran (does -run match any?)")
		return 1
	}
	return code
}
