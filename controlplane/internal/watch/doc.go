// Package watch runs client-go shared informers on Services, EndpointSlices
// (discovery/v1), Nodes and, where the API server serves them,
// ServiceCIDRs (networking/v1), and hands every add, update and delete to a
// Sink.
//
// It owns the API-server side only: no model, no gRPC.
package watch
