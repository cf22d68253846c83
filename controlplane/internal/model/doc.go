// Package model turns Kubernetes Services, EndpointSlices, Nodes and
// ServiceCIDRs into the entries of the nodes' views (doormanv1.ServicePort
// and doormanv1.Node; every Node entry carries the union of the
// ServiceCIDR objects' ranges).
//
// It is pure: it takes API objects and returns values and errors. It must not
// import client-go, gRPC, logging or anything that reads a clock.
//
// Most Services look the same on every node, so a key's value is a Value: one
// Default for every node, plus overrides by node name and by zone for the
// few Services whose endpoints depend on where the traffic starts
// (internalTrafficPolicy/externalTrafficPolicy Local, topology hints). Nodes
// without an override share the Default.
package model
