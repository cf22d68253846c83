package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"
)

// heapObjects is the runtime metric a heapWatch follows: the bytes of
// live and not yet swept heap objects.
const heapObjects = "/memory/classes/heap/objects:bytes"

// heapWatch follows the harness's own heap and writes a heap profile each
// time it reaches a new high (by a quarter), so the file ends up holding
// the profile nearest the peak.
type heapWatch struct {
	path   string
	mu     sync.Mutex
	peak   uint64 // the most heap seen
	wrote  uint64 // heap when the profile was last written
	writes int
}

func newHeapWatch(path string) *heapWatch { return &heapWatch{path: path} }

func (w *heapWatch) run(ctx context.Context, every time.Duration) {
	sample := []metrics.Sample{{Name: heapObjects}}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		w.observe(sample[0].Value.Uint64())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (w *heapWatch) observe(heap uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.peak = max(w.peak, heap)
	if w.path == "" || heap < 32<<20 || heap < w.wrote+w.wrote/4 {
		return
	}
	if err := writeHeapProfile(w.path); err != nil {
		fmt.Fprintln(os.Stderr, "bench: heap profile:", err)
		return
	}
	w.wrote = heap
	w.writes++
}

// peakBytes is the most heap seen so far.
func (w *heapWatch) peakBytes() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// reportHarnessMemory records the harness's own peak RSS and heap: the
// simulated agents all live in it.
func (s *scaleSim) reportHarnessMemory() {
	u, err := readUsage(os.Getpid())
	if err != nil {
		return
	}
	s.rep.add(sysScale, s.f.services, mHarnessPeakRSS, float64(u.PeakRSS))
	s.rep.add(sysScale, s.f.services, mHarnessPeakHeap, float64(s.heap.peakBytes()))
	fmt.Printf("harness: peak RSS %d MiB, peak heap %d MiB (%d agents)\n", u.PeakRSS>>20, s.heap.peakBytes()>>20, len(s.agents))
	if s.f.heapProfile != "" {
		fmt.Println("heap profile:", s.f.heapProfile)
	}
}

// startCPUProfile profiles the harness's CPU into path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// fetchCPUProfile writes a CPU profile of d from the control plane whose
// --http-listen is addr (run with --profiling) to path.
func fetchCPUProfile(ctx context.Context, addr string, d time.Duration, path string) error {
	return fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d/time.Second)), path)
}

// fetchProfile writes what the pprof handler at url answers to path,
// retrying for a minute while the process is not listening yet.
func fetchProfile(ctx context.Context, url, path string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			defer func() { _ = resp.Body.Close() }()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", url, resp.Status)
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			return os.WriteFile(path, b, 0o644)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", url, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
