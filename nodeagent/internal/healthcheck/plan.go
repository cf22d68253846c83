package healthcheck

import (
	"fmt"
	"sort"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Service is what one health check port reports.
type Service struct {
	Namespace string
	Name      string
	// LocalEndpoints counts the node's ready (not terminating) endpoints.
	LocalEndpoints int
}

// Plan returns, for every health check node port in the view, the Service
// it reports on. The ServicePort entries of one Service (its ports and IP
// families) share the port; the count is the largest among them, so a Pod
// serving both families counts once. Two Services claiming one port: the
// first in key order keeps it, the other is reported in conflicts.
func Plan(view map[string]*doormanv1.Entry) (ports map[uint16]Service, conflicts []error) {
	keys := make([]string, 0, len(view))
	for k, e := range view {
		if e.GetServicePort().GetHealthCheckNodePort() != 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	ports = map[uint16]Service{}
	for _, k := range keys {
		sp := view[k].GetServicePort()
		hc := sp.GetHealthCheckNodePort()
		if hc > 65535 {
			conflicts = append(conflicts, fmt.Errorf("entry %q: health check node port %d out of range", k, hc))
			continue
		}
		port := uint16(hc)
		n := 0
		for _, ep := range sp.GetLocalEndpoints() {
			if !ep.GetTerminating() {
				n++
			}
		}
		cur, ok := ports[port]
		switch {
		case !ok:
			ports[port] = Service{Namespace: sp.GetNamespace(), Name: sp.GetName(), LocalEndpoints: n}
		case cur.Namespace != sp.GetNamespace() || cur.Name != sp.GetName():
			conflicts = append(conflicts, fmt.Errorf("entry %q: health check node port %d already used by %s/%s", k, port, cur.Namespace, cur.Name))
		case n > cur.LocalEndpoints:
			cur.LocalEndpoints = n
			ports[port] = cur
		}
	}
	return ports, conflicts
}
