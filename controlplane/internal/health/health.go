package health

import (
	"errors"
	"net/http"
)

// Check is one condition of readiness: nil when met, else why not.
type Check func() error

// ErrNotSynced is what Synced reports before the informers have synced.
var ErrNotSynced = errors.New("informers not synced")

// Synced is the check that synced reports true.
func Synced(synced func() bool) Check {
	return func() error {
		if !synced() {
			return ErrNotSynced
		}
		return nil
	}
}

// Handler serves /healthz and /readyz. /readyz answers 503 with the first
// failing check's error as its body, else 200.
func Handler(ready ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, check := range ready {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
