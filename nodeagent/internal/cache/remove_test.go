package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestClaimWaitsForOpenCache: while a Cache is open (as in a running
// agent) Claim reports busy and does not return; once it is closed Claim
// gets the lock. A Claim whose context ends first fails.
func TestClaimWaitsForOpenCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "doorman", "agent.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Claim(ctx, path, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim of an open cache: %v, want the deadline", err)
	}

	busy := make(chan struct{}, 1)
	type result struct {
		c   *Claimed
		err error
	}
	done := make(chan result, 1)
	go func() {
		cl, err := Claim(context.Background(), path, func() { busy <- struct{}{} })
		done <- result{cl, err}
	}()
	select {
	case <-busy:
	case <-time.After(5 * time.Second):
		t.Fatal("Claim of an open cache did not report busy")
	}
	select {
	case r := <-done:
		t.Fatalf("Claim returned (%v) while the cache is open", r.err)
	case <-time.After(3 * claimPoll):
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Claim did not return after the cache was closed")
	}
	if r.err != nil {
		t.Fatalf("Claim: %v", r.err)
	}
	// While claimed, an agent cannot open the cache.
	if _, err := Open(path, "node-1"); err == nil {
		t.Error("Open of a claimed cache succeeded")
	}
	if err := r.c.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestRemove: the file, its set-aside copies and the agent's own directory
// go; a directory that is not doorman's, or holds other files, stays; a
// missing file is no error.
func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dir       string   // below the test's temporary directory
		files     []string // in dir, besides agent.db
		wantGone  []string // relative to the temporary directory
		wantStays []string
	}{
		{
			name:     "own directory",
			dir:      "doorman",
			files:    []string{"agent.db.corrupt-1", "agent.db.corrupt-2"},
			wantGone: []string{"doorman", "doorman/agent.db", "doorman/agent.db.corrupt-1", "doorman/agent.db.corrupt-2"},
		},
		{
			name:      "own directory with other files",
			dir:       "doorman",
			files:     []string{"notes.txt"},
			wantGone:  []string{"doorman/agent.db"},
			wantStays: []string{"doorman", "doorman/notes.txt"},
		},
		{
			name:      "shared directory",
			dir:       "tmp",
			wantGone:  []string{"tmp/agent.db"},
			wantStays: []string{"tmp"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, tc.dir)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "agent.db")
			c, err := Open(path, "node-1")
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cl, err := Claim(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			removed, err := cl.Remove()
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			var want []string
			for _, g := range tc.wantGone {
				want = append(want, filepath.Join(root, g))
			}
			if diff := cmp.Diff(want, removed); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			for _, g := range want {
				if _, err := os.Lstat(g); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s after Remove: %v", g, err)
				}
			}
			for _, s := range tc.wantStays {
				if _, err := os.Lstat(filepath.Join(root, s)); err != nil {
					t.Errorf("%s after Remove: %v", s, err)
				}
			}

			// Again: nothing left to remove.
			cl, err = Claim(context.Background(), path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if removed, err := cl.Remove(); err != nil || len(removed) != 0 {
				t.Errorf("second Remove: %v, %v; want nothing", removed, err)
			}
		})
	}
}
