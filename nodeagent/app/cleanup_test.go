package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testlog"
	"github.com/doorman-proxy/doorman/internal/testnet"
)

// TestCleanup: --cleanup on a node where an agent programmed a view and
// keeps a cache waits for that agent to exit (it would repair the table),
// then deletes the table inet doorman, the cache file, its set-aside copy
// and the agent's directory, and leaves another table alone. A second run
// finds nothing and succeeds.
func TestCleanup(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	nftIn(t, ns, "", "add", "table", "inet", "firewall")
	nftIn(t, ns, "", "add", "chain", "inet", "firewall", "input", "{ type filter hook input priority 0; }")

	dir := filepath.Join(t.TempDir(), "doorman")
	cachePath := filepath.Join(dir, "agent.db")
	run, _ := programmedAgentIn(t, ns, cachePath)
	if err := os.WriteFile(cachePath+".corrupt-1", []byte("not bbolt"), 0o600); err != nil {
		t.Fatal(err)
	}

	cleanup := func(logs *testlog.Buffer) error {
		return Cleanup(context.Background(), CleanupConfig{
			CachePath: cachePath, NetNSPath: ns.Path(),
			Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
		})
	}
	logs := &testlog.Buffer{}
	done := make(chan error, 1)
	go func() { done <- cleanup(logs) }()

	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "waiting for the node agent to exit") {
		if time.Now().After(deadline) {
			t.Fatalf("cleanup did not wait for the running agent\nlogs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("cleanup returned (%v) while the agent runs\nlogs:\n%s", err, logs.String())
	case <-time.After(500 * time.Millisecond):
	}
	if got := nftIn(t, ns, "", "list", "tables"); !strings.Contains(got, "table inet doorman") {
		t.Fatalf("table inet doorman gone while the agent runs:\n%s", got)
	}

	run.stop(t)
	if err := receive(t, done, "cleanup"); err != nil {
		t.Fatalf("Cleanup: %v\nlogs:\n%s", err, logs.String())
	}
	if got := nftIn(t, ns, "", "list", "tables"); strings.Contains(got, "doorman") || !strings.Contains(got, "table inet firewall") {
		t.Errorf("tables after cleanup:\n%s\nwant inet firewall only", got)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		t.Errorf("cache directory %s after cleanup: %v (holds %v)", dir, err, entries)
	}
	for _, msg := range []string{"deleted nftables table", "deleted cache"} {
		if logLine(logs.String(), msg) == "" {
			t.Errorf("no log line %q:\n%s", msg, logs.String())
		}
	}

	// Idempotent: nothing left to delete is a success.
	logs2 := &testlog.Buffer{}
	if err := cleanup(logs2); err != nil {
		t.Fatalf("second Cleanup: %v", err)
	}
	for _, msg := range []string{"no nftables table to delete", "no cache file to delete"} {
		if logLine(logs2.String(), msg) == "" {
			t.Errorf("second run: no log line %q:\n%s", msg, logs2.String())
		}
	}
	if got := nftIn(t, ns, "", "list", "table", "inet", "firewall"); !strings.Contains(got, "hook input") {
		t.Errorf("table inet firewall changed:\n%s", got)
	}
}

// TestCleanupGivesUp: a clean-up stopped (SIGTERM) while an agent still
// holds the cache fails and deletes nothing.
func TestCleanupGivesUp(t *testing.T) {
	ns := testnet.NewNS(t, "agent")
	cachePath := filepath.Join(t.TempDir(), "doorman", "agent.db")
	programmedAgentIn(t, ns, cachePath)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := Cleanup(ctx, CleanupConfig{CachePath: cachePath, NetNSPath: ns.Path()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Cleanup while the agent runs: %v, want the deadline", err)
	}
	if got := nftIn(t, ns, "", "list", "tables"); !strings.Contains(got, "table inet doorman") {
		t.Errorf("table inet doorman deleted by a clean-up that gave up:\n%s", got)
	}
	if _, err := os.Stat(cachePath); err != nil {
		t.Errorf("cache after a clean-up that gave up: %v", err)
	}
}
