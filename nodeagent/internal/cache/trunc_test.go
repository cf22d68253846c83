package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
)

// TestTruncatedAtEverySize cuts a cache file at every page boundary: each
// cut either still loads the whole view (the cut fell in unused space) or
// is set aside with an empty view; none crashes the process (bbolt maps the
// file, and reading past its end faults). The view is large enough
// (over parallelFrom records) to be decoded on every CPU.
func TestTruncatedAtEverySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	var changes []state.Change
	for i := range 2 * parallelFrom {
		e := entry(t, fmt.Sprintf("svc-%04d", i), "10.244.1.1", "10.244.1.2")
		changes = append(changes, state.Change{Key: e.Key, New: e})
	}
	if err := c.Save(3, changes); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for size := 4096; size < len(full); size += 4096 {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cache.db")
			if err := os.WriteFile(p, full[:size], 0o600); err != nil {
				t.Fatal(err)
			}
			c, view, reset, err := OpenView(p, "node-1")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			switch {
			case reset == nil && view.Len() == len(changes):
			case reset != nil && view.Len() == 0:
			default:
				t.Fatalf("cut at %d of %d bytes: reset %v, view of %d entries", size, len(full), reset, view.Len())
			}
		})
	}
}
