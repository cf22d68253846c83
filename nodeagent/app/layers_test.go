package app

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/followup"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	"github.com/doorman-proxy/doorman/nodeagent/internal/metrics"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// committingKernel commits every transaction at once.
type committingKernel struct{}

func (committingKernel) Sync(map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	return dataplane.Stats{}, nil
}

func (committingKernel) Apply([]dataplane.Change) (dataplane.Stats, error) {
	return dataplane.Stats{}, nil
}

func (committingKernel) RetireUnused() (int, error) { return 0, nil }

// slowHealth is health check node port servers that take delay to follow
// the view.
type slowHealth struct {
	delay   time.Duration
	updates int
}

func (h *slowHealth) Update(map[string]*doormanv1.Entry) error {
	h.updates++
	time.Sleep(h.delay)
	return nil
}

// TestKernelLayersTimeTheTransactionAlone: the sync duration the metrics
// report is the kernel's transaction, not the follow-ups run after it.
func TestKernelLayersTimeTheTransactionAlone(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := metrics.NewRules(reg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &slowHealth{delay: 300 * time.Millisecond}
	k := kernelLayers{
		timing:   m,
		followUp: followup.Config{Health: hc},
		rules:    rules,
		health:   healthcheck.NewProxy(clock.RealClock{}, 0),
	}.stack(committingKernel{})
	if _, err := k.Sync(map[string]*doormanv1.Entry{}); err != nil {
		t.Fatal(err)
	}
	if hc.updates != 1 {
		t.Fatalf("health check servers updated %d times, want once after the commit", hc.updates)
	}
	count, sum := histogram(t, reg, "kubeproxy_sync_proxy_rules_duration_seconds")
	if count != 1 || sum >= hc.delay.Seconds() {
		t.Errorf("sync duration: %d transactions taking %.3fs in all, want one taking less than the follow-ups' %s", count, sum, hc.delay)
	}
}

// histogram returns the sample count and sum of the histogram name in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0, 0
}
