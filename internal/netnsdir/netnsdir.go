// Package netnsdir prepares the directory where named network namespaces
// are bound, as ip-netns(8) does, under a lock shared by every process
// that calls it.
//
// `ip netns add` makes /run/netns a shared mount the first time it runs
// after boot, by binding the directory onto itself, recursively. A
// namespace bound there at that moment is then bound twice, once hidden
// under the new mount: removing it (netns.DeleteNamed, `ip netns del`)
// unmounts the visible one and fails to remove the file, which the hidden
// one holds. Tests that name namespaces run in parallel processes, some
// through ip(8) and some through the netns library; each calls Prepare
// before it names one, so the directory is prepared once, before any
// namespace is bound there.
package netnsdir

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Dir is where named network namespaces are bound (ip-netns(8)).
const Dir = "/run/netns"

// lockPath is the lock Prepare holds while it prepares Dir.
const lockPath = "/run/netns.lock"

// Prepare makes Dir a shared mount of its own, binding it onto itself
// first when it is not a mount yet, as `ip netns add` would; once it is,
// Prepare (and ip) change nothing. Needs root.
func Prepare() error { return prepare(Dir, lockPath) }

// prepare is Prepare for the directory dir, under the lock at lockPath.
func prepare(dir, lockPath string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netns directory: %w", err)
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("netns directory: lock: %w", err)
	}
	defer func() { _ = lock.Close() }()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("netns directory: lock %s: %w", lockPath, err)
	}
	for bound := false; ; bound = true {
		err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, unix.EINVAL) || bound:
			return fmt.Errorf("netns directory: make %s shared: %w", dir, err)
		}
		// Not a mount of its own yet.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("netns directory: bind %s onto itself: %w", dir, err)
		}
	}
}
