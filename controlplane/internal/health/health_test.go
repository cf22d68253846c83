package health

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	var stale atomic.Pointer[error]
	none := error(nil)
	stale.Store(&none)
	h := Handler(Synced(ready.Load), func() error { return *stale.Load() })
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	for _, tt := range []struct {
		name     string
		ready    bool
		stale    error
		path     string
		want     int
		wantBody string
	}{
		{"healthz before sync", false, nil, "/healthz", http.StatusOK, "ok"},
		{"readyz before sync", false, nil, "/readyz", http.StatusServiceUnavailable, "informers not synced"},
		{"readyz after sync", true, nil, "/readyz", http.StatusOK, "ok"},
		{"readyz stale", true, errors.New("services: no event or bookmark for 5m0s"), "/readyz", http.StatusServiceUnavailable, "services: no event or bookmark for 5m0s"},
		{"healthz stale", true, errors.New("stale"), "/healthz", http.StatusOK, "ok"},
		{"unknown path", true, nil, "/nope", http.StatusNotFound, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			stale.Store(&tt.stale)
			code, body := get(tt.path)
			if code != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, code, tt.want)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s body %q, want it to say %q", tt.path, body, tt.wantBody)
			}
		})
	}
}
