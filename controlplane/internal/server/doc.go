// Package server is the control plane's gRPC face: AgentService.Sync (the
// thin loop that moves a node's session between the stream and the hub)
// and InspectService. Its codec writes pre-encoded SyncResponse frames as
// they are and marshals every other message normally.
//
// Limits are the server options and the listener that bound what clients
// hold: connections (capped at the listener), streams per connection,
// connection age (so every agent authenticates again, then resumes by
// digests), idle connections, and the keepalive pings it accepts (agents
// ping every 30 s; the server allows every 20 s).
//
// It maps errors to gRPC status codes; it holds no state of its own.
package server
