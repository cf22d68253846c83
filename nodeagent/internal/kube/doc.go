// Package kube is the node agent's client of the Kubernetes API: the only
// two things the agent reads there, the EndpointSlices of the control
// plane's Service (discovery) and the CA ConfigMap (credentials).
//
// Client is client-go's REST client over a scheme of just core/v1 and
// discovery.k8s.io/v1, making the requests client-go's typed clients make. It does
// not use the generated clientset (k8s.io/client-go/kubernetes) nor its
// informers: importing those registers every API group of Kubernetes at
// start-up, which costs the agent about 10 MiB of resident memory (pages of
// the binary and heap) on every node, whether or not it talks to the API
// server at all. Tests that want client-go's fake clientset adapt it with
// kubetest, which only test binaries import.
//
// kube imports client-go's rest package and the two API groups' types; it
// must not import k8s.io/client-go/kubernetes, k8s.io/client-go/informers,
// k8s.io/client-go/gentype, gRPC, nftables or the agent's state.
package kube
