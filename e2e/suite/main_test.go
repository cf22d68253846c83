//go:build e2e

package suite

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

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
	flagByNode   = flag.Bool("e2e.local-endpoints-by-node", true, "run the netns cluster's control plane with --local-endpoints-by-node, so that the Local traffic policy tests judge the ports agents assemble (kind runs deploy/'s defaults, which send them whole)")
)

// prov is the cluster every test runs against.
var prov provider.Provider

// doormanBinDir holds the controlplane and nodeagent binaries the netns
// cluster runs ("" on other providers); a test that needs a cluster of its
// own (other control-plane flags) starts one from them.
var doormanBinDir string

func TestMain(m *testing.M) {
	flag.Parse()
	name := provider.Selected(*flagProvider)
	opts := provider.NetNSOptions{
		Nodes:       *flagNodes,
		Proxy:       cluster.Proxy(*flagProxy),
		KeepWorkDir: *flagKeep,
	}
	if *flagByNode {
		opts.ControlPlaneArgs = []string{"--local-endpoints-by-node"}
	}
	netns := name == "netns"
	os.Exit(provider.Run(m, provider.Package[provider.Provider]{
		Name:      "e2e",
		NeedsRoot: netns,
		NotRoot:   "the netns provider needs root (it creates network namespaces); run the suite as root, or against kind with DOORMAN_E2E_PROVIDER=kind KUBECONFIG=…",
		Binaries:  netns && opts.Proxy == cluster.ProxyDoorman,
		LogInfo:   *flagVerbose,
		// The kind provider starts a dialer Pod per node and needs root
		// for its external client, as netns does.
		Start: func(ctx context.Context, env provider.Env) (provider.Provider, error) {
			opts.Logger, opts.DoormanBinDir = env.Log, env.DoormanBinDir
			doormanBinDir = env.DoormanBinDir
			p, err := provider.Open(ctx, name, opts)
			prov = p
			return p, err
		},
		Done: func(p provider.Provider, code int) int {
			if !summarize(os.Stdout, p.Name()) {
				fmt.Fprintln(os.Stderr, "e2e: no test ran (does -run match any?)")
				return 1
			}
			return code
		},
	}))
}
