package cache

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
)

// TestConfirmed: every write of the view records when a control plane
// confirmed it, Confirm refreshes it alone, and Clear leaves a file that
// holds no view.
func TestConfirmed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.Local)
	c.now = func() time.Time { return now }
	confirmed := func() time.Time {
		t.Helper()
		got, err := c.Confirmed()
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := confirmed(); !got.IsZero() {
		t.Errorf("new file confirmed at %v, want never", got)
	}
	if err := c.Confirm(); err != nil {
		t.Fatal(err)
	}
	if got := confirmed(); !got.IsZero() {
		t.Errorf("Confirm of a file without a view: confirmed at %v, want never", got)
	}
	web := entry(t, "web", "10.244.1.1")
	if err := c.Save(1, []state.Change{{Key: web.Key, New: web}}); err != nil {
		t.Fatal(err)
	}
	if got := confirmed(); !got.Equal(now) {
		t.Errorf("after Save: confirmed at %v, want %v", got, now)
	}
	now = now.Add(time.Hour)
	if err := c.Confirm(); err != nil {
		t.Fatal(err)
	}
	if got := confirmed(); !got.Equal(now) {
		t.Errorf("after Confirm: confirmed at %v, want %v", got, now)
	}
	s, err := c.Load()
	if err != nil || s.Version != 1 || len(s.Entries) != 1 {
		t.Fatalf("Confirm changed the view: %v, %v", s, err)
	}
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	if s, err := c.Load(); err != nil || s.Version != 0 || len(s.Entries) != 0 {
		t.Errorf("after Clear: %v, %v; want no view", s, err)
	}
	if got := confirmed(); !got.IsZero() {
		t.Errorf("after Clear: confirmed at %v, want never", got)
	}
}

// TestLockedIsNotCorrupt: a file another process holds is reported as
// locked and left where it is, not set aside.
func TestLockedIsNotCorrupt(t *testing.T) {
	old := lockTimeout
	lockTimeout = 50 * time.Millisecond
	t.Cleanup(func() { lockTimeout = old })
	path := filepath.Join(t.TempDir(), "cache.db")
	holder, err := Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Close() }()
	c, _, reset, err := OpenView(path, "node-1")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("OpenView of a locked file: %v, want ErrLocked", err)
	}
	if c != nil || reset != nil {
		t.Errorf("OpenView of a locked file: cache %v, reset %+v; want neither", c, reset)
	}
	if _, err := os.Stat(path + ".corrupt-1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a locked file was set aside: %v", err)
	}
}

// TestSetAsideKeepsNewest: only the newest KeptAside copies stay, and a
// new copy is numbered after the highest, whatever was deleted.
func TestSetAsideKeepsNewest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	for _, n := range []string{"2", "5", "7", "9", "x"} {
		if err := os.WriteFile(path+".corrupt-"+n, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, reset, err := OpenView(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if reset == nil || reset.Aside != path+".corrupt-10" {
		t.Fatalf("reset %+v, want the file set aside as .corrupt-10", reset)
	}
	if diff := cmp.Diff([]string{path + ".corrupt-2", path + ".corrupt-5"}, reset.Removed); diff != "" || reset.PruneErr != nil {
		t.Errorf("removed (-want +got):\n%s (error %v)", diff, reset.PruneErr)
	}
	left, err := filepath.Glob(path + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(left)
	want := []string{path + ".corrupt-10", path + ".corrupt-7", path + ".corrupt-9", path + ".corrupt-x"}
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("files left (-want +got):\n%s", diff)
	}
}
