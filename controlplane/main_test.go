package main

import (
	"testing"

	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/config/configtest"
)

// The control plane's file has a field for every flag, reads back to the
// same configuration, and names a field it refuses.
func TestConfigFile(t *testing.T) {
	configtest.Check(t, run, configtest.Binary{
		Name:            "controlplane",
		Kind:            config.ControlPlaneKind,
		CommandLineOnly: []string{"config", "write-config-to", "version"},
		Args:            []string{"--max-connections=5", "--stale-after=1m"},
		Want:            map[string]any{"maxConnections": 5.0, "staleAfter": "1m0s"},
		BadField:        "maxConnections",
	})
}
