package repocheck

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTracked is the largest file the repository may track.
const maxTracked = 1 << 20

func TestNoLargeTrackedFiles(t *testing.T) {
	root := repoRoot(t)
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	n := 0
	for _, f := range bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0}) {
		name := string(f)
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			continue // deleted in the work tree, not yet committed
		}
		n++
		if fi.Size() > maxTracked {
			t.Errorf("%s is tracked and %d bytes (over %d): build outputs and large binaries stay out of the repository", name, fi.Size(), maxTracked)
		}
	}
	if n == 0 || !strings.Contains(string(out), "go.mod") {
		t.Fatalf("git ls-files listed %d files and no go.mod: not the repository", n)
	}
}
