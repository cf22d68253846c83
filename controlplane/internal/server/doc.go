// Package server is the control plane's gRPC face: AgentService.Sync (the
// thin loop that moves a node's session between the stream and the hub)
// and InspectService. Its codec writes pre-encoded SyncResponse frames as
// they are and marshals every other message normally.
//
// It maps errors to gRPC status codes; it holds no state of its own.
package server
