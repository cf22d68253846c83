// Package agent decides what the node agent does with each update from the
// control plane: validate and apply it to the state (an entry that fails
// the shared validator, doormanv1.ValidateEntry, is refused alone before
// the kernel: it is held in the view, kept out of the kernel like a value
// the kernel refused, and listed as not programmed in the Ack; only a
// broken message is NACKed whole), move the kernel (Apply
// with the changes; on failure one full Sync; on failure again find the
// values the kernel refuses by trying the changes in halves from the
// kernel's previous content, apply the rest and ACK with the refused keys
// not programmed, or revert and NACK when nothing could be applied), record
// it in the cache, and answer with an ACK or NACK. A refused value is
// remembered: later updates that bring it again leave it out of the kernel
// without a retry (no loop), the kernel keeps the key's previous value, and
// a new value is tried; the cache holds what the kernel holds. What the
// dataplane leaves out (an entry it cannot render, or one whose address
// another entry owns) is listed as not programmed, the list replaced by
// each commit: an entry the dataplane programs because an update freed its
// address leaves the list with that update's Ack. It also
// programs the kernel from the cached view at start-up, and reports the
// agent's status for Inspect and /healthz. An agent made with NewRestoring
// says its Hello from what the cache records while the view still loads,
// and handles no update before the view is restored and programmed
// (Open).
//
// Freshness: each update carries its control plane's freshness marker
// (how far its informers had read each resource); the agent keeps the
// latest change it applied per resource and refuses, before anything else,
// an update whose control plane has not seen that far (a replica whose
// watch fell behind would take the node back to older endpoints). The
// caller decides when a refusal has lasted long enough to accept anyway
// (HandleBehind).
//
// Drift: Resync reconciles the kernel with the view on a foreign change, on
// lost events or on a long period, and decides whether that was a drift
// repair (Sync never retires chains, so any change it makes is one); the
// periodic resync also retires unused per-endpoint-count chains, which is
// not drift. Commits tells the agent's own nftables transactions from
// foreign ones by their generation and netlink port. Watching the kernel's
// events is the drift package's.
//
// agent holds no clock, no network and no logger: the kernel and the cache
// sit behind the small Kernel and Store interfaces, and every decision is
// returned in an Outcome for the caller (the stream loop) to log and send.
// It may import state, the dataplane's types and the wire API; it must not
// import gRPC, bbolt or netlink directly.
package agent
