package metrics

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/doorman-proxy/doorman/internal/version"
)

func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	info := version.Get()
	want := map[string]string{"binary": "nodeagent", "goversion": info.GoVersion, "revision": info.ShortRevision(), "version": info.Version}
	for _, f := range families {
		if f.GetName() != "doorman_build_info" {
			continue
		}
		if len(f.GetMetric()) != 1 {
			t.Fatalf("doorman_build_info has %d series, want 1", len(f.GetMetric()))
		}
		m := f.GetMetric()[0]
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("doorman_build_info labels (-want +got):\n%s", diff)
		}
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("doorman_build_info = %v, want 1", v)
		}
		return
	}
	t.Fatal("no doorman_build_info")
}
