package conntrack

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netns"
)

// procNetfilter is where the conntrack sysctls live; what it shows depends
// on the network namespace of the thread that opens it.
const procNetfilter = "/proc/sys/net/netfilter"

// Applied is what Apply did with one sysctl.
type Applied struct {
	Setting
	Was     int
	Written bool
	Err     error // could not read or write it
}

// Apply sets the sysctls s asks for in the network namespace at netnsPath
// ("" = the caller's), each read first and written only when it differs
// (nf_conntrack_max only raised), and logs each. A sysctl it cannot set
// (read-only /proc/sys in an unprivileged container, nf_conntrack_max in a
// namespace other than the host's, conntrack not loaded) is logged with
// the reason and left: the rules work without it. The error is only for
// settings that make no sense, or a record that cannot be read.
//
// Before it first changes a sysctl, Apply records the value it found in
// the file s.Record ("" = no record), which Restore reads at uninstall;
// a sysctl it cannot record is not changed. Every setting goes through
// here, so every one is recorded, whatever its name.
func Apply(log hclog.Logger, netnsPath string, cpus int, s Settings) ([]Applied, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("conntrack")
	wanted, err := s.Wanted(cpus)
	if err != nil {
		return nil, err
	}
	if len(wanted) == 0 {
		return nil, nil
	}
	rec, err := loadRecord(s.Record)
	if err != nil {
		return nil, err
	}
	var out []Applied
	err = inNetNS(netnsPath, func() error {
		for _, w := range wanted {
			out = append(out, apply(w, rec))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, a := range out {
		switch {
		case a.Err != nil:
			log.Warn("conntrack sysctl not set", "sysctl", a.Name, "want", a.Value, "error", a.Err)
		case a.Written:
			log.Info("conntrack sysctl set", "sysctl", a.Name, "from", a.Was, "to", a.Value)
		default:
			log.Info("conntrack sysctl already as wanted", "sysctl", a.Name, "value", a.Was, "want", a.Value)
		}
	}
	return out, nil
}

func apply(w Setting, rec *record) Applied {
	a := Applied{Setting: w}
	path := w.path()
	a.Was, a.Err = readInt(path)
	if a.Err != nil || !w.Needs(a.Was) {
		return a
	}
	if err := rec.note(path, a.Was, w.Value); err != nil {
		a.Err = err
		return a
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(w.Value)), 0o644); err != nil {
		a.Err = explain(err, w.Name)
		return a
	}
	a.Written = true
	return a
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, explain(err, filepath.Base(path))
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return n, nil
}

// explain names the usual causes an operator can act on.
func explain(err error, name string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: no such sysctl (is nf_conntrack loaded?): %w", name, err)
	case errors.Is(err, fs.ErrPermission) && name == SysctlMax:
		return fmt.Errorf("%s: read-only here (it can only be set from the host's network namespace): %w", name, err)
	case errors.Is(err, fs.ErrPermission), isReadOnlyFS(err):
		return fmt.Errorf("%s: /proc/sys is read-only in this container (set it from a privileged init container, as deploy/ does with --conntrack-sysctls-only): %w", name, err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

func isReadOnlyFS(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "read-only file system")
}

// inNetNS runs fn on a thread that has entered the namespace at path
// ("" = the caller's): /proc/sys/net shows the namespace of the thread
// that opens it. The thread is never unlocked: the runtime discards it
// with its goroutine, so the namespace switch cannot leak.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			done <- fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer func() { _ = ns.Close() }()
		if err := netns.Set(ns); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		done <- fn()
	}()
	return <-done
}
