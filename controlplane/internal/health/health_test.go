package health

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	h := Handler(ready.Load)
	code := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	for _, tt := range []struct {
		name  string
		ready bool
		path  string
		want  int
	}{
		{"healthz before sync", false, "/healthz", http.StatusOK},
		{"readyz before sync", false, "/readyz", http.StatusServiceUnavailable},
		{"readyz after sync", true, "/readyz", http.StatusOK},
		{"unknown path", true, "/nope", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ready.Store(tt.ready)
			if got := code(tt.path); got != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, got, tt.want)
			}
		})
	}
}
