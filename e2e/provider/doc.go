// Package provider is what the e2e suite runs against: a cluster it can
// create Services and Pods in and send traffic through, from a Pod and from
// outside the cluster.
//
// Two implementations share the suite: NetNS (package cluster, started by
// the suite itself) and Kind (an existing cluster given by KUBECONFIG, Pods
// running agnhost netexec, traffic sent through the API server's Pod proxy
// and from the host to node addresses). It must not import doorman's
// controlplane or nodeagent packages.
package provider
