// Package inspect serves the node agent's local window: AgentInspectService
// (GetState: what the agent holds and how its stream is doing, its error
// texts bounded; GetKernel: what doorman's nftables table holds, read back
// by the dataplane) with gRPC server reflection, so that grpcurl needs no
// .proto files, and ListenSocket, the root-only unix socket it is served
// on by default (it shows the whole cluster's view).
//
// It reads through small interfaces (Source, Kernel) and must not import
// the dataplane, bbolt or netlink itself.
package inspect
