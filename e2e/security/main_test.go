//go:build e2e

package security

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
)

// c is the secured cluster every test runs against.
var c *cluster.Cluster

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e/security: the netns cluster needs root (it creates network namespaces); run the tests as root")
		return 1
	}
	bin, cleanup, err := cluster.DoormanBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/security:", err)
		return 1
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err = cluster.Start(ctx, cluster.Config{
		Nodes:         2,
		K8sBinDir:     provider.DefaultK8sBinDir(),
		DoormanBinDir: bin,
		Proxy:         cluster.ProxyDoorman,
		Secure:        true,
		ControlPlaneArgs: []string{
			"--log-level=debug", // "sending update" lines: full or not
			"--max-connection-age=" + maxConnectionAge.String(),
			"--max-connection-age-grace=2s",
			// Every agent and every test client reaches the control
			// plane from 127.0.0.1 (the agents through a relay): one
			// peer whose refusals, made on purpose by these tests, must
			// not use up its budget of failed reviews.
			"--auth-failures-per-peer-burst=1000",
		},
		KeepWorkDir: os.Getenv("DOORMAN_E2E_KEEP") != "",
		Logger:      hclog.New(&hclog.LoggerOptions{Name: "e2e", Level: hclog.Warn}),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/security: start cluster:", err)
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "e2e/security: logs in", c.LogDir())
	}
	if err := c.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/security: close cluster:", err)
	}
	return code
}
