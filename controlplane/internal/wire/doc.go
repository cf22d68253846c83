// Package wire encodes view entries once and builds SyncResponse frames by
// concatenating those encodings, so an entry that reaches many nodes is
// serialised once, not once per node.
//
// It is pure: protobuf encoding only. It must not import gRPC, client-go or
// logging; the gRPC codec that passes frames through lives with the server.
package wire
