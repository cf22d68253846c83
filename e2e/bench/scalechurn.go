package main

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// churn is the sustained phase: endpoint changes written at a steady rate
// for a while, each to a Service of its own, so that every change shows on
// every agent as its own new endpoint, however the control plane
// coalesces them.
type churn struct {
	// tracks is read-only once the phase starts: the new endpoint's
	// address → its change.
	tracks map[string]*churnTrack
	agents int64
	left   atomic.Int64
	done   chan struct{}
}

// churnTrack follows one change of the phase to every agent, keeping only
// the last ACK (a change's lats would hold one entry per agent).
type churnTrack struct {
	start atomic.Int64 // Unix nanoseconds; 0: not written yet
	acked atomic.Int64
	last  atomic.Int64 // the latest ACK, nanoseconds after start
}

// record counts one agent's ACK of the change.
func (c *churn) record(t *churnTrack, now time.Time) {
	start := t.start.Load()
	if start == 0 {
		return
	}
	d := now.UnixNano() - start
	for {
		last := t.last.Load()
		if d <= last || t.last.CompareAndSwap(last, d) {
			break
		}
	}
	if t.acked.Add(1) == c.agents && c.left.Add(-1) == 0 {
		close(c.done)
	}
}

// seen records, for an update an agent acked, the phase's changes it
// carries.
func (c *churn) seen(u *doormanv1.SyncResponse) {
	now := time.Now()
	for _, e := range u.GetUpserts() {
		for _, ep := range e.GetServicePort().GetEndpoints() {
			if t, ok := c.tracks[ep.GetIp()]; ok {
				c.record(t, now)
			}
		}
	}
}

// sustained writes rate endpoint changes a second for d, each to another
// Service, and waits until every agent acked every one. It reports the
// changes' time from the write to the last agent's ACK and the replicas'
// CPU over the phase, in cores.
func (s *scaleSim) sustained(ctx context.Context, w *workload, cps []*controlPlane, rate float64, d time.Duration) error {
	total := int(math.Round(rate * d.Seconds()))
	if total <= 0 {
		return nil
	}
	if total > s.f.services {
		return fmt.Errorf("churn: %d changes over %d Services: each change needs a Service of its own", total, s.f.services)
	}
	c := &churn{tracks: make(map[string]*churnTrack, total), agents: int64(len(s.agents)), done: make(chan struct{})}
	ips := make([]netip.Addr, total)
	for i := range ips {
		ips[i] = w.freshIP()
		c.tracks[ips[i].String()] = &churnTrack{}
	}
	c.left.Store(int64(total))
	before, err := s.usageNow(cps)
	if err != nil {
		return err
	}
	s.churn.Store(c)
	defer s.churn.Store(nil)
	if s.f.churnProfile != "" {
		profiled := make(chan error, 1)
		go func() { profiled <- fetchCPUProfile(ctx, cps[0].http, d, s.f.churnProfile) }()
		defer func() {
			if err := <-profiled; err != nil {
				fmt.Printf("churn: no replica profile: %v\n", err)
			}
		}()
	}
	began := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		behind   time.Duration // the writes' worst lag behind their schedule
	)
	for i, ip := range ips {
		at := began.Add(time.Duration(i) * interval)
		if wait := time.Until(at); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		} else {
			behind = max(behind, -wait)
		}
		svc := (i*7919 + 313) % s.f.services
		t := c.tracks[ip.String()]
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.start.Store(time.Now().UnixNano())
			if err := w.changeEndpoint(ctx, svc, ip); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("churn: %w", firstErr)
	}
	written := time.Since(began)
	select {
	case <-c.done:
	case <-time.After(s.f.timeout):
		return fmt.Errorf("churn: %d of %d changes not acked by every agent %s after the last write", c.left.Load(), total, s.f.timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	elapsed := time.Since(began)
	after, err := s.usageNow(cps)
	if err != nil {
		return err
	}
	lasts := make([]time.Duration, 0, total)
	for _, t := range c.tracks {
		lasts = append(lasts, time.Duration(t.last.Load()))
	}
	slices.Sort(lasts)
	cores := (after.controlPlane - before.controlPlane) / elapsed.Seconds()
	n := float64(len(s.agents))
	s.add(mSustainedRate, float64(total)/written.Seconds())
	s.add(mSustainedP50, percentile(lasts, 50).Seconds())
	s.add(mSustainedP99, percentile(lasts, 99).Seconds())
	s.add(mSustainedCores, cores)
	s.add(mSustainedUpdatesPerSecond, float64(after.msgs-before.msgs)/n/elapsed.Seconds())
	// The simulated agents share the machine's cores with the control
	// plane and the API server: their share says whose figure this is.
	harnessCores := (after.harness - before.harness) / elapsed.Seconds()
	fmt.Printf("churn: %d changes at %.1f/s over %s (writes at most %s behind schedule): last ACK p50 %s p99 %s max %s; control plane %.2f cores, harness %.2f cores; per agent %.1f updates/s, %.0f bytes/s\n",
		total, float64(total)/written.Seconds(), written.Round(time.Millisecond), behind.Round(time.Millisecond),
		percentile(lasts, 50).Round(time.Millisecond), percentile(lasts, 99).Round(time.Millisecond), lasts[len(lasts)-1].Round(time.Millisecond),
		cores, harnessCores, float64(after.msgs-before.msgs)/n/elapsed.Seconds(), float64(after.bytes-before.bytes)/n/elapsed.Seconds())
	return nil
}

// phaseUsage is what the sustained phase is measured by, read at its start
// and at its end.
type phaseUsage struct {
	controlPlane, harness float64 // CPU seconds: the replicas', the harness's
	bytes, msgs           int64   // received by the agents
}

func (s *scaleSim) usageNow(cps []*controlPlane) (phaseUsage, error) {
	cp, err := cpuSeconds(cps)
	if err != nil {
		return phaseUsage{}, err
	}
	h, err := readUsage(os.Getpid())
	if err != nil {
		return phaseUsage{}, err
	}
	b, m := s.traffic()
	return phaseUsage{controlPlane: cp, harness: h.CPUSeconds, bytes: b, msgs: m}, nil
}
