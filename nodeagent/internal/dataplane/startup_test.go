package dataplane_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/cache"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// BenchmarkStartUp measures an agent's start-up path at 100,000 Services
// × 2 endpoints with nothing changed since the last run: the cache file
// (written with the kernel's mark) is loaded, a fresh dataplane trusts the
// mark and Syncs the cached view without reading the elements back. Each
// start runs in a process of its own (the test binary again, see
// TestMain), as an agent's does: its heap starts empty, so every page
// it uses is a page fault, which in a virtual machine costs as much as
// much of the work. load-s/op and sync-s/op are the two steps' wall time,
// cpu-s/op and sys-s/op the process's CPU time (all, and the kernel's
// share) for both, faults/op its page faults.
func BenchmarkStartUp(b *testing.B) {
	const n = 100000
	node := testnet.NewNS(b, "bench")
	path := filepath.Join(b.TempDir(), "cache.db")
	writeStartUpCache(b, node, path, n)
	b.ResetTimer()
	var sum startUpFigures
	for i := 0; i < b.N; i++ {
		f := runStartUpChild(b, path, node.Path(), n)
		sum.Load += f.Load
		sum.Sync += f.Sync
		sum.add(f.usage)
	}
	per := func(x float64) float64 { return x / float64(b.N) }
	b.ReportMetric(per(sum.Load.Seconds()), "load-s/op")
	b.ReportMetric(per(sum.Sync.Seconds()), "sync-s/op")
	sum.report(b)
}

// startUpFigures is what one start-up measured of itself.
type startUpFigures struct {
	Load, Sync time.Duration
	usage
	Err string
}

// The start-up child's environment: the cache file, the node's network
// namespace and the number of Services the cache holds.
const (
	startUpCacheEnv = "DOORMAN_STARTUP_CACHE"
	startUpNetNSEnv = "DOORMAN_STARTUP_NETNS"
	startUpSizeEnv  = "DOORMAN_STARTUP_SERVICES"
)

// runStartUpChild runs one start-up in a new process and returns its
// figures.
func runStartUpChild(b *testing.B, cachePath, netns string, n int) startUpFigures {
	b.Helper()
	var f startUpFigures
	runChild(b, &f, startUpCacheEnv+"="+cachePath, startUpNetNSEnv+"="+netns, startUpSizeEnv+"="+strconv.Itoa(n))
	if f.Err != "" {
		b.Fatalf("start-up child: %s", f.Err)
	}
	return f
}

// runChild runs the test binary again with env added and decodes the
// figures it prints into f. The child collects garbage at the agent's
// start-up target (GOGC=400, as nodeagent/app's startGCPercent).
func runChild(b *testing.B, f any, env ...string) {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), env...), "GOGC=400")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("child %v: %v\n%s%s", env, err, out, stderr.Bytes())
	}
	line := out
	if i := bytes.Index(out, []byte(childFigures)); i >= 0 {
		line, _, _ = bytes.Cut(out[i+len(childFigures):], []byte("\n"))
	}
	if err := json.Unmarshal(line, f); err != nil {
		b.Fatalf("child's figures: %v\n%s", err, out)
	}
}

// childFigures marks the line a child prints its figures on, as JSON.
const childFigures = "child-figures "

// TestMain runs one start-up of BenchmarkStartUp, or one Sync of
// BenchmarkSyncEmpty, instead of the tests when the benchmark started the
// process for it (see runChild), and prints its figures for the benchmark
// to read.
func TestMain(m *testing.M) {
	var f any
	switch {
	case os.Getenv(startUpCacheEnv) != "":
		f = startUpChild(os.Getenv(startUpCacheEnv), os.Getenv(startUpNetNSEnv), os.Getenv(startUpSizeEnv))
	case os.Getenv(syncEmptyNetNSEnv) != "":
		f = syncEmptyChild(os.Getenv(syncEmptyNetNSEnv), os.Getenv(startUpSizeEnv))
	default:
		os.Exit(m.Run())
	}
	line, err := json.Marshal(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%s%s\n", childFigures, line)
	os.Exit(0)
}

func startUpChild(cachePath, netns, services string) (f startUpFigures) {
	n, err := strconv.Atoi(services)
	if err != nil {
		return startUpFigures{Err: fmt.Sprintf("%s=%q: %v", startUpSizeEnv, services, err)}
	}
	ru0, start := rusage(), time.Now()
	c, view, reset, err := cache.OpenView(cachePath, "node-1")
	if err != nil || reset != nil {
		return startUpFigures{Err: fmt.Sprintf("OpenView: %v, reset %+v", err, reset)}
	}
	defer func() { _ = c.Close() }()
	loaded := time.Now()
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: netns})
	if err != nil {
		return startUpFigures{Err: fmt.Sprintf("Open: %v", err)}
	}
	defer func() { _ = d.Close() }()
	d.Trust(dataplane.DecodeMark(c.KernelMark()))
	stats, err := d.Sync(view.Entries())
	if err != nil {
		return startUpFigures{Err: fmt.Sprintf("Sync: %v", err)}
	}
	synced, ru1 := time.Now(), rusage()
	if stats.Ops != 0 || stats.Read != dataplane.ReadSkipped || view.Len() != n+1 {
		return startUpFigures{Err: fmt.Sprintf("start-up Sync of %d entries: %d ops, read %q; want %d entries, 0 ops, read %q", view.Len(), stats.Ops, stats.Read, n+1, dataplane.ReadSkipped)}
	}
	return startUpFigures{Load: loaded.Sub(start), Sync: synced.Sub(loaded), usage: used(ru0, ru1)}
}

// rusage is the process's resource usage so far.
func rusage() syscall.Rusage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru
}

// usage is what a child used between two rusage readings: CPU time (all,
// and the kernel's share) and page faults.
type usage struct {
	CPU, Sys time.Duration
	Faults   int64
}

func used(before, after syscall.Rusage) usage {
	sys := time.Duration(after.Stime.Nano() - before.Stime.Nano())
	return usage{CPU: sys + time.Duration(after.Utime.Nano()-before.Utime.Nano()), Sys: sys, Faults: after.Minflt - before.Minflt}
}

func (u *usage) add(o usage) {
	u.CPU += o.CPU
	u.Sys += o.Sys
	u.Faults += o.Faults
}

// report reports the usage summed over b.N children, per child.
func (u usage) report(b *testing.B) {
	per := func(x float64) float64 { return x / float64(b.N) }
	b.ReportMetric(per(u.CPU.Seconds()), "cpu-s/op")
	b.ReportMetric(per(u.Sys.Seconds()), "sys-s/op")
	b.ReportMetric(per(float64(u.Faults)), "faults/op")
}

// writeStartUpCache programs n Services into node and writes them to a
// cache file at path with the kernel's mark, as a running agent leaves it.
func writeStartUpCache(b *testing.B, node *testnet.NS, path string, n int) {
	b.Helper()
	entries := bigView(n)
	for _, e := range entries {
		var err error
		if sp := e.GetServicePort(); sp != nil {
			e.Digest, err = doormanv1.ValueDigest(sp)
		} else {
			e.Digest, err = doormanv1.ValueDigest(e.GetNode())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	d := open(b, node)
	if _, err := d.Sync(entries); err != nil {
		b.Fatalf("Sync: %v", err)
	}
	c, err := cache.Open(path, "node-1")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	c.SetKernelMark(d.Mark().Encode())
	changes := make([]state.Change, 0, len(entries))
	for _, key := range slices.Sorted(maps.Keys(entries)) {
		changes = append(changes, state.Change{Key: key, New: entries[key]})
	}
	if err := c.Save(1, changes); err != nil {
		b.Fatal(err)
	}
}
