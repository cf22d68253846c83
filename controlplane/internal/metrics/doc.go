// Package metrics owns the control plane's Prometheus series, in a private
// registry served at /metrics on the HTTP listener.
//
// It observes without changing behaviour: per-node state is read from the
// hub at scrape time (Source), stream traffic is counted by a gRPC stats
// handler on the server, informer events and the time the hub takes to
// recompute the model and the view are counted by a decorator around the
// hub as the informers' sink.
//
// It must not import client-go beyond API types, nor the node agent.
package metrics
