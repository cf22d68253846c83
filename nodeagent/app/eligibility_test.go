package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// nodeView is entries with the Node entry changed by mod; without the
// Node entry when mod is nil.
func nodeView(t *testing.T, mod func(*doormanv1.Node)) []*doormanv1.Entry {
	t.Helper()
	view := entries(t)
	if mod == nil {
		return view[:1]
	}
	n := view[1].GetNode()
	mod(n)
	view[1].Digest, _ = doormanv1.ValueDigest(n)
	return view
}

// healthz answers /healthz: its status and nodeEligible.
func (r *agentRun) healthz(t *testing.T) (int, *bool) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(r.health)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var body struct {
		NodeEligible *bool `json:"nodeEligible"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body.NodeEligible
}

// TestNodeEligibility: the Node entry the control plane sends decides
// /healthz once the update commits: 503 with nodeEligible false while the
// Node is tainted ToBeDeletedByClusterAutoscaler, being deleted or
// missing, 200 again once it is back; /livez stays 200. Each answer is
// counted by code.
func TestNodeEligibility(t *testing.T) {
	_, run, cp := programmedAgent(t)
	run.waitHealth(t, http.StatusOK)
	version := uint64(1)
	send := func(t *testing.T, view []*doormanv1.Entry, removals ...string) {
		t.Helper()
		version++
		var upserts []*doormanv1.Entry
		for _, e := range view {
			if e.GetKey() == doormanv1.NodeKey {
				upserts = append(upserts, e)
			}
		}
		cp.updates <- &doormanv1.SyncResponse{Version: version, Upserts: upserts, Removals: removals, ViewDigest: digestOf(view)}
		if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != version {
			t.Fatalf("reply %v, want an ack of version %d\nlogs:\n%s", r, version, run.logs.String())
		}
	}
	codes := map[int]float64{}
	for _, step := range []struct {
		name     string
		view     []*doormanv1.Entry
		removals []string
		want     int
	}{
		{"tainted by the autoscaler", nodeView(t, func(n *doormanv1.Node) { n.ToBeDeleted = true }), nil, http.StatusServiceUnavailable},
		{"taint removed", nodeView(t, func(*doormanv1.Node) {}), nil, http.StatusOK},
		{"being deleted", nodeView(t, func(n *doormanv1.Node) { n.Deleting = true }), nil, http.StatusServiceUnavailable},
		{"Node object gone", nodeView(t, nil), []string{doormanv1.NodeKey}, http.StatusServiceUnavailable},
		{"Node object back", nodeView(t, func(*doormanv1.Node) {}), nil, http.StatusOK},
	} {
		send(t, step.view, step.removals...)
		code, eligible := run.healthz(t)
		codes[code]++
		if code != step.want || eligible == nil || *eligible != (step.want == http.StatusOK) {
			t.Errorf("%s: /healthz %d nodeEligible %v, want %d and %v", step.name, code, eligible, step.want, step.want == http.StatusOK)
		}
		if got := run.get(t, "/livez"); got != http.StatusOK {
			t.Errorf("%s: /livez %d, want 200", step.name, got)
		}
	}
	// waitHealth's answers count too: at least one 200.
	got := run.scrapeLabelled(t, "kubeproxy_proxy_healthz_total")
	if got[`code="503"`] != codes[http.StatusServiceUnavailable] || got[`code="200"`] < codes[http.StatusOK]+1 {
		t.Errorf("kubeproxy_proxy_healthz_total %v, want 503: %v and 200: over %v", got, codes[http.StatusServiceUnavailable], codes[http.StatusOK])
	}
	if live := run.scrapeLabelled(t, "kubeproxy_proxy_livez_total"); live[`code="200"`] < 5 || live[`code="503"`] != 0 {
		t.Errorf("kubeproxy_proxy_livez_total %v, want 5 or more 200s and no 503", live)
	}
}

// scrapeLabelled reads one counter family of /metrics by its labels
// (code="200").
func (r *agentRun) scrapeLabelled(t *testing.T, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(r.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
		}
		out[strings.Join(labels, ",")] = m.GetCounter().GetValue()
	}
	return out
}
