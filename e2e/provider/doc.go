// Package provider is what the e2e suite runs against: a cluster it can
// create Services and Pods in and send traffic through, from a Pod, from a
// node's own network and from a client outside the cluster, judging by
// what the Pods' echo servers (package echo) answered.
//
// Two implementations share the suite. NetNS (package cluster, started by
// the suite itself) dials from inside the namespaces of its simulated Pods
// and nodes. Kind (an existing cluster given by KUBECONFIG, doorman
// deployed from deploy/) runs doorman's echo image (e2e/echo/cmd/echo) in
// every Pod and sends requests from there through each Pod's control
// endpoint, reached through the API server's Pod proxy; node-origin
// requests and the node agents' Inspect calls go through a dialer Pod on
// each node's host network; the external client is a network namespace of
// this machine attached to kind's Docker bridge, so it needs root there
// too. It must not import doorman's controlplane or nodeagent packages.
//
// Run (and RunCluster for a netns cluster of the package's own) is every
// e2e test package's TestMain: root check, doorman's binaries, start-up
// within StartTimeout, the package's workload, teardown on exit or signal.
package provider
