package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleRoot is the doorman repository's root: the nearest directory above
// the working directory whose go.mod declares doorman's module.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/doorman-proxy/doorman\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the doorman repository")
		}
		dir = parent
	}
}

// DoormanBinaries returns a directory holding controlplane and nodeagent:
// $DOORMAN_BIN when set, else a fresh build of the module's binaries into a
// temporary directory that cleanup removes.
func DoormanBinaries() (dir string, cleanup func(), err error) {
	if dir := os.Getenv("DOORMAN_BIN"); dir != "" {
		return dir, func() {}, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", nil, err
	}
	dir, err = os.MkdirTemp("", "doorman-bin-")
	if err != nil {
		return "", nil, err
	}
	// -buildvcs=true: stamped with the commit (see internal/version) even
	// when GOFLAGS turns stamping off.
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", dir+"/", "./controlplane", "./nodeagent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build doorman binaries: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}
