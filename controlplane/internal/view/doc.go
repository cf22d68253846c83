// Package view holds the control plane's versioned views: every key's
// encoded value, shared by all nodes unless a node (or its zone) has an
// override, each node's "node" entry, the bucket and view digests of every
// node's view, and a bounded change log saying which keys changed at which
// version and for which nodes.
//
// Memory: a key's value is kept once for all nodes; per node the view keeps
// only the node entry, the digest differences its overrides make (a sparse
// map) and the version of its last own change. A node's view is never
// copied out into a per-node map.
//
// It is pure: values in, values out. It must not import gRPC, client-go,
// logging or read a clock.
package view
