package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/promtext"
)

// stages are doorman's latency series, each timed from a change's trigger
// time (the EndpointSlice annotation the benchmark writes just before its
// update) to a later point: cumulative, so each share is the difference
// with the stage before.
var stages = []struct {
	share, series string
	p50, p99      *metric
}{
	{"api", "doorman_controlplane_endpointslice_event_delay_seconds", mShareAPIP50, mShareAPIP99}, // API write and watch
	{"controlplane", "doorman_controlplane_update_send_delay_seconds", mShareControlPlaneP50, mShareControlPlaneP99},
	{"stream", "doorman_agent_update_receive_delay_seconds", mShareStreamP50, mShareStreamP99},
	{"kernel", "kubeproxy_network_programming_duration_seconds", mShareKernelP50, mShareKernelP99}, // decode, render, commit
}

// shareReader splits each change's latency into the API server's, the
// control plane's, the stream's and the agent's shares, from the growth
// of doorman's latency histograms between two changes (which the
// benchmark makes one at a time).
type shareReader struct {
	c      *cluster.Cluster
	node   string
	last   map[string]float64
	shares map[string][]time.Duration
	// unsplit counts changes whose series did not all grow.
	unsplit int
}

func newShareReader(ctx context.Context, c *cluster.Cluster, node string) (*shareReader, error) {
	r := &shareReader{c: c, node: node, shares: map[string][]time.Duration{}}
	m, err := r.scrape(ctx)
	if err != nil {
		return nil, err
	}
	r.last = m
	return r, nil
}

// scrape reads the control plane's and the node agent's series.
func (r *shareReader) scrape(ctx context.Context) (map[string]float64, error) {
	agent, err := r.c.AgentMetrics(ctx, r.node)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.c.ControlPlaneHTTP()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control plane metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	cp, err := promtext.Sums(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("control plane metrics: %w", err)
	}
	for k, v := range agent {
		if strings.HasPrefix(k, "doorman_agent_") || strings.HasPrefix(k, "kubeproxy_") {
			cp[k] = v
		}
	}
	return cp, nil
}

// changed records the shares of the change made since the last call. The
// agent observes its series after its commit, so this waits (up to bound)
// for every series to grow; a change whose series do not all grow is
// counted as unsplit.
func (r *shareReader) changed(ctx context.Context, bound time.Duration) error {
	var m map[string]float64
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, bound, true, func(ctx context.Context) (bool, error) {
		var err error
		if m, err = r.scrape(ctx); err != nil {
			return false, err
		}
		_, ok := split(r.last, m)
		return ok, nil
	})
	if err != nil && !wait.Interrupted(err) {
		return err
	}
	if m == nil {
		r.unsplit++
		return nil
	}
	defer func() { r.last = m }()
	shares, ok := split(r.last, m)
	if !ok {
		r.unsplit++
		return nil
	}
	for i, st := range stages {
		r.shares[st.share] = append(r.shares[st.share], shares[i])
	}
	return nil
}

// split returns each stage's share of the change whose samples the series
// gained from before to now, in the order of stages; false when a series
// gained none. A change of a Service with several ports brings one sample
// per port: the mean counts.
func split(before, now map[string]float64) ([]time.Duration, bool) {
	var out []time.Duration
	var prev float64
	for _, s := range stages {
		n := now[s.series+"_count"] - before[s.series+"_count"]
		if n <= 0 {
			return nil, false
		}
		at := (now[s.series+"_sum"] - before[s.series+"_sum"]) / n
		out = append(out, time.Duration((at-prev)*float64(time.Second)))
		prev = at
	}
	return out, true
}

// report adds each share's p50 and p99 and prints them.
func (r *shareReader) report(rep *report, system string, n int) {
	if len(r.shares["api"]) > 0 {
		fmt.Print("shares p50/p99:")
	}
	for _, s := range stages {
		d := r.shares[s.share]
		if len(d) == 0 {
			continue
		}
		p50, p99 := percentile(d, 50), percentile(d, 99)
		rep.add(system, n, s.p50, p50.Seconds())
		rep.add(system, n, s.p99, p99.Seconds())
		fmt.Printf(" %s %s/%s", s.share, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond))
	}
	if r.unsplit > 0 {
		rep.add(system, n, mChangesUnsplit, float64(r.unsplit))
		fmt.Printf(" (%d changes unsplit)", r.unsplit)
	}
	fmt.Print(", ")
}
