package metrics

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health wraps h, the agent's /healthz and /livez handler, so that every
// answer is counted by its HTTP status code, as kube-proxy counts its own:
// kubeproxy_proxy_healthz_total{code} and kubeproxy_proxy_livez_total{code}.
// Other paths go to h uncounted.
func Health(reg prometheus.Registerer, h http.Handler) (http.Handler, error) {
	healthz := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubeproxy_proxy_healthz_total",
		Help: "Answers of /healthz by HTTP status code: 200 while the agent is healthy and its node eligible, 503 otherwise.",
	}, []string{"code"})
	livez := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kubeproxy_proxy_livez_total",
		Help: "Answers of /livez by HTTP status code: 200 while no work has waited for the kernel longer than the health timeout, 503 otherwise.",
	}, []string{"code"})
	for _, c := range []prometheus.Collector{healthz, livez} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register health metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", promhttp.InstrumentHandlerCounter(healthz, h))
	mux.Handle("/livez", promhttp.InstrumentHandlerCounter(livez, h))
	mux.Handle("/", h)
	return mux, nil
}
