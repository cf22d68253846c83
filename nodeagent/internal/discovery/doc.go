// Package discovery finds the control-plane replicas without a Service VIP
// or cluster DNS (doorman is what makes VIPs work): it watches the
// EndpointSlices of the control plane's Service (label
// kubernetes.io/service-name) in the API server and lists the ready
// endpoints' address:port for the named port.
//
// Addresses is the pure part: slices in, a sorted address list out.
// Watcher is the thin client-go shell around it: an informer over
// kube.EndpointSlices (not client-go's generated informers, see kube). The
// agent talks to the API server for nothing else but the CA ConfigMap.
// discovery imports client-go's tools/cache, kube and the Kubernetes API
// types; it must not import gRPC, nftables, netlink or the agent's state.
package discovery
