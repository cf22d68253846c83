package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"
)

// claimPoll is how often Claim tries the lock of a file another process
// holds.
const claimPoll = 200 * time.Millisecond

// ownDirName is the name of the directory the agent's cache lives in by
// default (/var/lib/doorman). Remove deletes the file's directory only when
// it has this name and is empty: a cache put in a shared directory (such
// as /tmp) must not take the directory with it.
const ownDirName = "doorman"

// Claimed is a cache file whose lock this process holds: no agent uses it.
type Claimed struct {
	path string
	file *os.File // nil when there was no file to lock
}

// Claim waits until no process holds the cache file at path and takes its
// lock. An agent holds that lock (bbolt's flock) for as long as it runs, so
// once Claim returns no agent on this node can program the kernel from, or
// write to, this file. busy is called once if the file is found locked.
// A missing file is claimed at once. Claim gives up when ctx ends.
func Claim(ctx context.Context, path string, busy func()) (*Claimed, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Claimed{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim cache %s: %w", path, err)
	}
	tick := time.NewTicker(claimPoll)
	defer tick.Stop()
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Claimed{path: path, file: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("claim cache %s: lock: %w", path, err)
		}
		if !told && busy != nil {
			busy()
			told = true
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("claim cache %s: still locked by another process: %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// Remove deletes the claimed file and the unreadable copies SetAside left
// beside it (path.corrupt-N), then their directory if it is the agent's own
// (named doorman) and nothing else is left in it, and releases the lock. It
// returns what it deleted, sorted. Nothing to delete is not an error.
func (c *Claimed) Remove() ([]string, error) {
	defer func() { _ = c.Release() }()
	aside, err := filepath.Glob(globEscape(c.path) + ".corrupt-*")
	if err != nil {
		return nil, fmt.Errorf("remove cache %s: %w", c.path, err)
	}
	var removed []string
	for _, p := range append([]string{c.path}, aside...) {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = append(removed, p)
		case errors.Is(err, os.ErrNotExist):
		default:
			return removed, fmt.Errorf("remove cache file %s: %w", p, err)
		}
	}
	dir := filepath.Dir(c.path)
	if filepath.Base(dir) == ownDirName {
		err := os.Remove(dir)
		switch {
		case err == nil:
			removed = append(removed, dir)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, unix.ENOTEMPTY), errors.Is(err, unix.EEXIST):
			// Gone already, or holds files that are not doorman's: kept.
		case errors.Is(err, unix.EBUSY):
			// A mount point (the directory itself is mounted into this
			// container): only the host can delete it.
		default:
			return removed, fmt.Errorf("remove cache directory %s: %w", dir, err)
		}
	}
	sort.Strings(removed)
	return removed, nil
}

// Release drops the lock (closing the file does) and keeps the file.
func (c *Claimed) Release() error {
	if c.file == nil {
		return nil
	}
	err := c.file.Close()
	c.file = nil
	if err != nil {
		return fmt.Errorf("release cache %s: %w", c.path, err)
	}
	return nil
}

// globEscape quotes the characters filepath.Glob treats as a pattern.
func globEscape(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			out = append(out, '\\')
		}
		out = append(out, s[i])
	}
	return string(out)
}
