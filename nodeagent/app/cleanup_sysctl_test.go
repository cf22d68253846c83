package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testlog"
	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
)

// TestCleanupRestoresSysctls: --cleanup puts back the conntrack sysctls
// the agent set, keeps one an administrator changed since, and deletes
// the record with the agent's directory; a second run finds nothing.
func TestCleanupRestoresSysctls(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	sysctl := func(name string) string { t.Helper(); return ns.ReadSysctl(t, "net/netfilter/"+name) }
	closeWait, established := sysctl(conntrack.SysctlTCPCloseWait), sysctl(conntrack.SysctlTCPEstablished)
	dir := filepath.Join(t.TempDir(), "doorman")
	record := filepath.Join(dir, conntrack.RecordFile)
	s := conntrack.Settings{TCPCloseWait: time.Hour, TCPEstablished: 24 * time.Hour, Record: record}
	if _, err := conntrack.Apply(nil, ns.Path(), 2, s); err != nil {
		t.Fatal(err)
	}
	if got := sysctl(conntrack.SysctlTCPCloseWait); got != "3600" || got == closeWait {
		t.Fatalf("%s = %s after Apply (was %s), want 3600", conntrack.SysctlTCPCloseWait, got, closeWait)
	}
	if err := ns.Do(func() error {
		return os.WriteFile("/proc/sys/net/netfilter/"+conntrack.SysctlTCPEstablished, []byte("1234"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}

	cleanup := func(logs *testlog.Buffer) error {
		return Cleanup(context.Background(), CleanupConfig{
			CachePath: filepath.Join(dir, "agent.db"), SysctlRecord: record, NetNSPath: ns.Path(),
			Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
		})
	}
	logs := &testlog.Buffer{}
	if err := cleanup(logs); err != nil {
		t.Fatalf("Cleanup: %v\nlogs:\n%s", err, logs.String())
	}
	if got := sysctl(conntrack.SysctlTCPCloseWait); got != closeWait {
		t.Errorf("%s = %s after cleanup, want %s (before the agent)", conntrack.SysctlTCPCloseWait, got, closeWait)
	}
	if got := sysctl(conntrack.SysctlTCPEstablished); got != "1234" {
		t.Errorf("%s = %s after cleanup, want 1234 (the administrator's; %s before the agent)", conntrack.SysctlTCPEstablished, got, established)
	}
	for _, msg := range []string{"sysctl restored", "sysctl changed since doorman set it: kept"} {
		if logLine(logs.String(), msg) == "" {
			t.Errorf("no log line %q:\n%s", msg, logs.String())
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("directory %s after cleanup: %v (holds %v)", dir, err, entries)
	}

	logs2 := &testlog.Buffer{}
	if err := cleanup(logs2); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	if logLine(logs2.String(), "no sysctls to restore") == "" {
		t.Errorf("second run: no log line %q:\n%s", "no sysctls to restore", logs2.String())
	}
}
