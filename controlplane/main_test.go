package main

import (
	"flag"
	"strings"
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

// A change log that keeps nothing is refused at start, naming the flag.
func TestChangeLogLimitValidated(t *testing.T) {
	for _, v := range []string{"0", "-5"} {
		err := run(flag.NewFlagSet("controlplane", flag.ContinueOnError), []string{"--change-log-limit=" + v})
		if err == nil || !strings.Contains(err.Error(), "--change-log-limit") {
			t.Errorf("--change-log-limit=%s: error %v, want one naming the flag", v, err)
		}
	}
}
