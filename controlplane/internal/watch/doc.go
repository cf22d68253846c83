// Package watch runs client-go shared informers on Services, EndpointSlices
// (discovery/v1), Nodes and, where the API server serves them,
// ServiceCIDRs (networking/v1), and hands every add, update and delete to a
// Sink. Freshness follows how far the informers have read each resource
// (resourceVersions of lists, events and bookmarks, and when the API
// server was last heard from): the marker every update carries to the
// agents, and the staleness /readyz reports. The informers' caches keep
// only what the model reads of each Service and EndpointSlice, in the
// forms of package compact (see trim): at 100,000 Services they are most
// of the control plane's memory.
//
// It owns the API-server side only: no model, no gRPC.
package watch
