// Package healthcheck answers the health questions kube-proxy answers.
//
// healthCheckNodePort: for every Service with externalTrafficPolicy Local
// and a health check node port, the node answers HTTP on that port with
// the number of its local ready endpoints — 200 when there is at least
// one, 503 when there is none (terminating endpoints do not count) — in
// kube-proxy's JSON form, so cloud load balancers send traffic only to
// nodes that can serve it. Plan is pure: a view in, the wanted servers
// out. Servers is the thin shell that opens and closes the listeners as
// the view changes, in the node's network namespace when one is given.
//
// The agent's own /healthz and /livez: Proxy applies kube-proxy's rule —
// unhealthy once work (an update received, a drift repair armed) has
// waited longer than the timeout for the kernel — with its own state,
// told by the agent's callers, so that a health request never waits for
// an update in progress. /healthz also needs the kernel to hold a view,
// and the node to be eligible as kube-proxy means it: the view's Node
// entry present, its Node object not being deleted nor tainted
// ToBeDeletedByClusterAutoscaler; otherwise it answers 503 with
// nodeEligible false, so that load balancers drain a node going away.
// /livez ignores eligibility.
//
// It imports the wire types, hclog, netns and k8s.io/utils/clock; it must
// not import the dataplane, gRPC or the agent's state.
package healthcheck
