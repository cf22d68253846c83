package cluster

import "context"

// ControlPlaneSecurityArgs prepares what a control plane's checks need in
// a secured cluster (the namespace, the agents' ServiceAccount) and returns
// the flags the cluster's own control plane gets, for a control plane run
// by the caller (with Proxy ProxyNone); in a cluster that is not secured,
// --insecure.
func (c *Cluster) ControlPlaneSecurityArgs(ctx context.Context) ([]string, error) {
	return c.controlPlaneSecurityArgs(ctx)
}
