// Package kubeconfig builds the API server client configuration both
// binaries use: in-cluster when no kubeconfig file is given, from the file
// otherwise, and in either case speaking protobuf to the API server.
//
// Protobuf is what kube-proxy and the kubelet ask for (kube-proxy's
// --kube-api-content-type defaults to it): at 100,000 Services and as
// many EndpointSlices, listing and decoding them as JSON costs the API
// server and doorman several times the CPU and garbage. Every type doorman
// reads is a built-in one; the Accept header still admits any type after
// protobuf, as kube-proxy's does, for paths that serve one of their own.
//
// The package imports client-go only and must not import either binary's
// packages.
package kubeconfig
