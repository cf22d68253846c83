// Package agent decides what the node agent does with each update from the
// control plane: validate and apply it to the state, move the kernel (Apply
// with the changes; on failure one full Sync; on failure again revert and
// NACK), record it in the cache, and answer with an ACK or NACK. It also
// programs the kernel from the cached view at start-up, and reports the
// agent's status for Inspect and /healthz.
//
// Drift: Resync reconciles the kernel with the view on a foreign change, on
// lost events or on a long period, and decides whether that was a drift
// repair; Commits tells the agent's own nftables transactions from foreign
// ones by their generation and netlink port. Watching the kernel's events is
// the drift package's.
//
// agent holds no clock, no network and no logger: the kernel and the cache
// sit behind the small Kernel and Store interfaces, and every decision is
// returned in an Outcome for the caller (the stream loop) to log and send.
// It may import state, the dataplane's types and the wire API; it must not
// import gRPC, bbolt or netlink directly.
package agent
