package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/doorman-proxy/doorman/internal/version"
)

// buildInfo is doorman_build_info: 1, labelled with this binary's build.
func buildInfo() prometheus.Collector {
	info := version.Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "doorman_build_info",
		Help: "1, labelled with the build: module version, VCS revision, Go version and binary.",
	}, []string{"version", "revision", "goversion", "binary"})
	g.WithLabelValues(info.Version, info.ShortRevision(), info.GoVersion, "controlplane").Set(1)
	return g
}
