package main

import (
	"testing"

	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/config/configtest"
)

// The agent's file has a field for every flag but the one-time actions,
// reads back to the same configuration, and names a field it refuses.
func TestConfigFile(t *testing.T) {
	configtest.Check(t, run, configtest.Binary{
		Name:            "nodeagent",
		Kind:            config.NodeAgentKind,
		CommandLineOnly: []string{"config", "write-config-to", "version", "cleanup", "wait", "conntrack-sysctls-only", "remove-kube-proxy-rules"},
		Args:            []string{"--conntrack-min=5", "--resync-period=1m"},
		Want:            map[string]any{"conntrackMin": 5.0, "resyncPeriod": "1m0s"},
		BadField:        "conntrackMaxPerCore",
	})
}
