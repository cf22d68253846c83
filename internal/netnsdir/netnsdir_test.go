package netnsdir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPrepare: a namespace bound after Prepare is bound once, whoever
// prepares the directory again (ip(8) or another test process), and
// removing it removes it; bound before the directory's first preparation
// (the control) it is bound twice, one hidden, and its file cannot be
// removed.
func TestPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount: run `go test` as root")
	}
	for _, tc := range []struct {
		name          string
		preparedFirst bool
		wantMounts    int
	}{
		{"prepared first", true, 1},
		{"control: bound before the first preparation", false, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, lock := filepath.Join(t.TempDir(), "netns"), filepath.Join(t.TempDir(), "lock")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			ns := filepath.Join(dir, "probe")
			t.Cleanup(func() {
				// Detached whole, then what it hid.
				_ = unix.Unmount(dir, unix.MNT_DETACH)
				for unix.Unmount(ns, unix.MNT_DETACH) == nil {
				}
			})
			if tc.preparedFirst {
				if err := prepare(dir, lock); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(ns, nil, 0o444); err != nil {
				t.Fatal(err)
			}
			self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(self, ns, "none", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			if err := prepare(dir, lock); err != nil {
				t.Fatal(err)
			}
			if got := mountsAt(t, ns); got != tc.wantMounts {
				t.Fatalf("namespace bound %d times, want %d", got, tc.wantMounts)
			}
			if err := unix.Unmount(ns, unix.MNT_DETACH); err != nil {
				t.Fatal(err)
			}
			err := os.Remove(ns)
			if tc.preparedFirst && err != nil {
				t.Errorf("remove the namespace's file: %v", err)
			}
			if !tc.preparedFirst && err == nil {
				t.Errorf("control: the file of a namespace bound twice was removed")
			}
		})
	}
}

// mountsAt counts the mounts whose mount point is path.
func mountsAt(t *testing.T, path string) int {
	t.Helper()
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.Lines(string(info)) {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}
