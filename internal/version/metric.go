package version

import "github.com/prometheus/client_golang/prometheus"

// Collector is doorman_build_info: 1, labelled with this build and the
// binary's name, for both binaries' /metrics.
func Collector(binary string) prometheus.Collector {
	info := Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "doorman_build_info",
		Help: "1, labelled with the build: module version, VCS revision, Go version and binary.",
	}, []string{"version", "revision", "goversion", "binary"})
	g.WithLabelValues(info.Version, info.ShortRevision(), info.GoVersion, binary).Set(1)
	return g
}
