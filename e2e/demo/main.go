package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

const (
	prefix    = "dmo"
	resultTag = "DEMO-RESULT "
)

type paths struct {
	root    string // repository root
	state   string // demo state directory
	k8sBin  string
	bin     string // doorman binaries
	work    string // cluster work dir
	pidFile string
	logFile string
}

func main() {
	cmd := "run"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	p, err := locate()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	switch cmd {
	case "run":
		os.Exit(run(p))
	case "serve":
		os.Exit(serve(p))
	case "down":
		if err := down(p); err != nil {
			fmt.Fprintln(os.Stderr, "demo down:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "usage: %s [run|down]\n", os.Args[0])
		os.Exit(2)
	}
}

func locate() (paths, error) {
	cache := os.Getenv("DOORMAN_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return paths{}, err
		}
		cache = filepath.Join(home, ".cache", "doorman")
	}
	root, err := cluster.ModuleRoot()
	if err != nil {
		return paths{}, err
	}
	state := filepath.Join(cache, "demo")
	bin := filepath.Join(state, "bin")
	if dir := os.Getenv("DOORMAN_BIN"); dir != "" {
		bin = dir
	}
	return paths{
		root:    root,
		state:   state,
		k8sBin:  filepath.Join(cache, "k8s-v1.36.3", "bin"),
		bin:     bin,
		work:    filepath.Join(state, "work"),
		pidFile: filepath.Join(state, "demo.pid"),
		logFile: filepath.Join(state, "demo.log"),
	}, nil
}

// run builds, starts the background cluster and relays its step output.
func run(p paths) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it creates network namespaces); try: sudo make demo")
		return 1
	}
	if err := buildAll(p); err != nil {
		fmt.Println("    FAIL:", err)
		return 1
	}
	if err := down(p); err != nil {
		fmt.Println("    FAIL: stopping the previous demo:", err)
		return 1
	}
	child, err := startServe(p)
	if err != nil {
		fmt.Println("    FAIL:", err)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()
	tearDownOnSignal(p, child, exited)
	return follow(p.logFile, exited)
}

// buildAll builds what is missing: the Kubernetes binaries, doorman
// (unless DOORMAN_BIN names them) and grpcurl, which the last step uses.
func buildAll(p paths) error {
	t0 := time.Now()
	fmt.Println("==> building what is missing")
	build := exec.Command(filepath.Join(p.root, "e2e", "hack", "build-k8s.sh"))
	build.Dir = p.root
	build.Stdout, build.Stderr = io.Discard, os.Stdout
	if err := build.Run(); err != nil {
		return fmt.Errorf("building the Kubernetes binaries: %w", err)
	}
	if dir := os.Getenv("DOORMAN_BIN"); dir != "" {
		fmt.Println("    doorman binaries from DOORMAN_BIN=" + dir)
	} else {
		if err := os.MkdirAll(p.bin, 0o755); err != nil {
			return err
		}
		// -buildvcs=true: stamped with the commit (see internal/version).
		gb := exec.Command("go", "build", "-buildvcs=true", "-o", p.bin+"/", "./controlplane", "./nodeagent")
		gb.Dir = p.root
		gb.Stdout, gb.Stderr = os.Stdout, os.Stdout
		fmt.Println("    go build ./controlplane ./nodeagent")
		if err := gb.Run(); err != nil {
			return fmt.Errorf("building doorman: %w", err)
		}
	}
	gt := exec.Command("go", "tool", "-modfile=tools/go.mod", "grpcurl", "-version")
	gt.Dir = p.root
	_ = gt.Run()
	fmt.Printf("    built in %s\n", time.Since(t0).Round(time.Second))
	return nil
}

// startServe starts the cluster process ("demo serve") in its own session,
// logging to the demo's log, and records its pid.
func startServe(p paths) (*exec.Cmd, error) {
	if err := os.MkdirAll(p.state, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(p.logFile)
	if err != nil {
		return nil, err
	}
	// The child holds its own descriptor of the log once started.
	defer func() { _ = logf.Close() }()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	child := exec.Command(self, "serve")
	child.Dir = p.root
	child.Stdout, child.Stderr = logf, logf
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return nil, fmt.Errorf("start the cluster process: %w", err)
	}
	if err := os.WriteFile(p.pidFile, []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
		return nil, err
	}
	return child, nil
}

// tearDownOnSignal tears the cluster down too on Ctrl-C while the steps
// run.
func tearDownOnSignal(p paths, child *exec.Cmd, exited <-chan error) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("\n==> interrupted: tearing the cluster down")
		_ = child.Process.Signal(syscall.SIGTERM)
		if err := <-exited; err != nil {
			fmt.Println("    cluster process ended:", err)
		}
		_ = cluster.Cleanup(prefix)
		_ = os.Remove(p.pidFile)
		os.Exit(130)
	}()
}

// follow prints the log as it grows until the result line.
func follow(path string, exited <-chan error) int {
	f, err := os.Open(path)
	if err != nil {
		fmt.Println("demo:", err)
		return 1
	}
	defer func() { _ = f.Close() }()
	r := bufio.NewReader(f)
	var partial string
	var childErr error
	childDone := false
	for {
		line, err := r.ReadString('\n')
		partial += line
		if err == nil {
			if strings.HasPrefix(partial, resultTag) {
				fields := strings.Fields(strings.TrimPrefix(partial, resultTag))
				for _, f := range fields {
					if f == "fail=0" {
						return 0
					}
				}
				return 1
			}
			fmt.Print(partial)
			partial = ""
			continue
		}
		if childDone {
			fmt.Print(partial)
			fmt.Println("demo: the cluster process ended early:", childErr)
			return 1
		}
		select {
		case childErr = <-exited:
			childDone = true
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// down stops a running demo and removes what it left.
func down(p paths) error {
	if b, err := os.ReadFile(p.pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && alive(pid) && isDemo(pid) {
			fmt.Printf("==> stopping the demo cluster (pid %d)\n", pid)
			_ = syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(60 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = os.Remove(p.pidFile)
	}
	if err := cluster.Cleanup(prefix); err != nil {
		return err
	}
	return os.RemoveAll(p.work)
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// isDemo checks the pid still runs this program (pids get reused).
func isDemo(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(b), "serve")
}

// serve runs in the background: the cluster, the steps, then waits for
// SIGTERM (demo down) or Ctrl-C.
func serve(p paths) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{p: p}
	defer d.close()
	pass, fail := d.steps(ctx)
	fmt.Printf("%spass=%d fail=%d\n", resultTag, pass, fail)
	if d.c == nil {
		return 1
	}
	<-ctx.Done()
	return 0
}
