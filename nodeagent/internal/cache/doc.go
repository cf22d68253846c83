// Package cache keeps the node agent's last applied view and its version in
// a bbolt file, so that an agent that restarts, or a node that boots while
// no control plane answers, programs its kernel from what it last applied
// and reports what it holds when it resumes.
//
// The file holds one bucket of entries (key → marshalled doorman.v1.Entry)
// and a meta bucket (format version, node name, view version, and when a
// control plane last confirmed the view: each write, and Confirm while a
// stream is open; the agent refuses to program a view confirmed too long
// ago, whose Pod IPs may belong to others by now). A freshness bucket holds
// the control planes' freshness marker the agent applied (see
// agent.Freshness), written in the same transaction as the view, and the
// meta record kernel-mark what the kernel held when the view was written
// (the dataplane's Mark, opaque here: SetKernelMark, SaveKernelMark), so
// that a restart with nothing changed does not read the table back. The
// meta record holding is what the agent's Hello says of the view written
// (SetHolding): a start reads it first (Begin, Head) and opens its stream
// while the view loads (Finish), trusting it only for the version it
// names. Save writes
// only the keys an update changed, in one transaction. Load reads it all
// back; a file that is not a bbolt database, is truncated, or holds a record
// that does not decode gives an error, and the caller sets the file aside
// with SetAside (keeping the newest KeptAside copies) and starts empty. A
// file another process holds locked is not corrupt: Open reports
// ErrLocked and leaves it.
//
// The file is memory-mapped, and what the mapping and bbolt's page pool
// hold counts in the agent's resident memory: OpenView maps the file afresh
// once the view is read, and a transaction of many records hands its page
// buffers back at once (see releaseAfterRecords).
//
// Claim and Remove are for the agent's --cleanup: Claim waits until no
// agent holds the file's lock (bbolt's flock, held while an agent runs),
// Remove deletes the file, its set-aside copies and the agent's own empty
// directory.
//
// cache touches bbolt and the file system only: no gRPC, netlink or
// dataplane. Records are decoded here, and validated by state.Restore.
package cache
