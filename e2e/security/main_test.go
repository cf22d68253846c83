//go:build e2e

package security

import (
	"context"
	"os"
	"testing"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
)

// c is the secured cluster every test runs against.
var c *cluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(provider.RunCluster(m, "e2e/security", cluster.Config{
		Nodes:  2,
		Proxy:  cluster.ProxyDoorman,
		Secure: true,
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
	}, func(_ context.Context, cl *cluster.Cluster) error {
		c = cl
		return nil
	}))
}
