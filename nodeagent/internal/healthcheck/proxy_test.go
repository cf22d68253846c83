package healthcheck

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestProxyStatus(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const timeout = 60 * time.Second
	type step struct {
		wait time.Duration
		do   func(*Proxy)
	}
	queued := func(p *Proxy) { p.QueuedUpdate() }
	programmed := func(p *Proxy) { p.Programmed() }
	answered := func(p *Proxy) { p.Answered() }
	repair := func(p *Proxy) { p.QueuedRepair() }
	for _, tc := range []struct {
		name        string
		steps       []step
		wantLive    bool
		wantHealthy bool
	}{
		{"just started, nothing received", nil, true, false},
		{"no control plane for an hour", []step{{wait: time.Hour}}, true, false},
		{"first update received, in time", []step{{do: queued}, {wait: timeout - time.Second}}, true, false},
		{"first update received, late", []step{{do: queued}, {wait: timeout}}, false, false},
		{"programmed from the cache", []step{{do: programmed}}, true, true},
		{"programmed, idle for a day", []step{{do: programmed}, {wait: 24 * time.Hour}}, true, true},
		{"update waiting, in time", []step{{do: programmed}, {wait: time.Hour, do: queued}, {wait: timeout - time.Second}}, true, true},
		{"update waiting, late", []step{{do: programmed}, {wait: time.Hour, do: queued}, {wait: timeout}}, false, false},
		{"late, then committed", []step{{do: programmed}, {do: queued}, {wait: 2 * timeout, do: programmed}}, true, true},
		{"the oldest queued counts", []step{{do: programmed}, {do: queued}, {wait: timeout / 2, do: queued}, {wait: timeout / 2}}, false, false},
		{"answered without the kernel", []step{{do: programmed}, {do: queued}, {wait: timeout / 2, do: answered}, {wait: timeout}}, true, true},
		{"repair armed before any view: nothing waits", []step{{do: repair}, {wait: 2 * timeout}}, true, false},
		{"repair pending, late", []step{{do: programmed}, {do: repair}, {wait: timeout}}, false, false},
		{"repair done", []step{{do: programmed}, {do: repair}, {wait: timeout / 2, do: programmed}, {wait: timeout}}, true, true},
		{"answered is not programmed", []step{{do: queued}, {do: answered}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakePassiveClock(start)
			p := NewProxy(clk, timeout)
			for _, s := range tc.steps {
				clk.SetTime(clk.Now().Add(s.wait))
				if s.do != nil {
					s.do(p)
				}
			}
			got := p.Status()
			if got.Live != tc.wantLive || got.Healthy != tc.wantHealthy {
				t.Errorf("live %v healthy %v, want live %v healthy %v", got.Live, got.Healthy, tc.wantLive, tc.wantHealthy)
			}
			if !got.CurrentTime.Equal(clk.Now()) {
				t.Errorf("currentTime %v, want %v", got.CurrentTime, clk.Now())
			}
		})
	}
}

func TestProxyHandler(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	clk := clocktesting.NewFakePassiveClock(start)
	p := NewProxy(clk, time.Minute)
	h := p.Handler()
	get := func(path string) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q, want application/json", path, ct)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("GET %s: body %q: %v", path, rec.Body.String(), err)
		}
		return rec.Code, body
	}
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	zero := ts(time.Time{})

	// Before the first view: /healthz 503 (readiness; no Node known, so
	// not eligible either), /livez 200.
	code, body := get("/healthz")
	want := map[string]any{"lastUpdated": zero, "currentTime": ts(start), "nodeEligible": false, "healthy": false}
	if code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before the first view = %d, want 503", code)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("/healthz body (-want +got):\n%s", diff)
	}
	code, body = get("/livez")
	want = map[string]any{"lastUpdated": ts(start), "currentTime": ts(start), "healthy": true}
	if code != http.StatusOK {
		t.Errorf("/livez before the first view = %d, want 200", code)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("/livez body (-want +got):\n%s", diff)
	}

	// Programmed with a Node entry: healthy, lastUpdated is now as
	// kube-proxy's.
	p.SetNode(&doormanv1.Node{Name: "n1"})
	p.Programmed()
	clk.SetTime(start.Add(time.Hour))
	code, body = get("/healthz")
	want = map[string]any{"lastUpdated": ts(clk.Now()), "currentTime": ts(clk.Now()), "nodeEligible": true, "healthy": true}
	if code != http.StatusOK {
		t.Errorf("/healthz once programmed = %d, want 200", code)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("/healthz body (-want +got):\n%s", diff)
	}

	// An update waits past the timeout: both 503, lastUpdated the real one.
	p.QueuedUpdate()
	clk.SetTime(clk.Now().Add(time.Minute))
	for _, path := range []string{"/healthz", "/livez"} {
		code, body = get(path)
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s with a late update = %d, want 503", path, code)
		}
		if body["lastUpdated"] != ts(start) || body["healthy"] != false {
			t.Errorf("%s body %v, want lastUpdated %s and healthy false", path, body, ts(start))
		}
	}
}

func TestEligible(t *testing.T) {
	for _, tc := range []struct {
		name string
		node *doormanv1.Node
		want bool
	}{
		{"no Node object", nil, false},
		{"present", &doormanv1.Node{Name: "n1"}, true},
		{"being deleted", &doormanv1.Node{Name: "n1", Deleting: true}, false},
		{"tainted by the autoscaler", &doormanv1.Node{Name: "n1", ToBeDeleted: true}, false},
		{"both", &doormanv1.Node{Name: "n1", Deleting: true, ToBeDeleted: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Eligible(tc.node); got != tc.want {
				t.Errorf("Eligible(%v) = %v, want %v", tc.node, got, tc.want)
			}
		})
	}
}

// TestProxyNodeEligibility: a programmed, live agent answers /healthz 503
// with nodeEligible false (healthy still true, as kube-proxy's body says)
// while its Node goes away or is missing, and 200 again once it is back;
// /livez answers 200 throughout.
func TestProxyNodeEligibility(t *testing.T) {
	p := NewProxy(clocktesting.NewFakePassiveClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), time.Minute)
	p.Programmed()
	h := p.Handler()
	type answer struct {
		Code         int
		NodeEligible *bool
		Healthy      bool
		LiveCode     int
	}
	get := func() answer {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		var body proxyHealth
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
		live := httptest.NewRecorder()
		h.ServeHTTP(live, httptest.NewRequest(http.MethodGet, "/livez", nil))
		return answer{Code: rec.Code, NodeEligible: body.NodeEligible, Healthy: body.Healthy, LiveCode: live.Code}
	}
	yes, no := true, false
	eligible := answer{Code: http.StatusOK, NodeEligible: &yes, Healthy: true, LiveCode: http.StatusOK}
	ineligible := answer{Code: http.StatusServiceUnavailable, NodeEligible: &no, Healthy: true, LiveCode: http.StatusOK}
	node := &doormanv1.Node{Name: "n1"}
	for _, step := range []struct {
		name string
		node *doormanv1.Node
		want answer
	}{
		{"present", node, eligible},
		{"tainted ToBeDeletedByClusterAutoscaler", &doormanv1.Node{Name: "n1", ToBeDeleted: true}, ineligible},
		{"taint removed", node, eligible},
		{"being deleted", &doormanv1.Node{Name: "n1", Deleting: true}, ineligible},
		{"Node object missing", nil, ineligible},
		{"Node object back", node, eligible},
	} {
		p.SetNode(step.node)
		if diff := cmp.Diff(step.want, get()); diff != "" {
			t.Errorf("%s: answer (-want +got):\n%s", step.name, diff)
		}
	}
}
