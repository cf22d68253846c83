// Package dataplane is the thin kernel shell of the node agent: it takes
// the objects package render computes and programs them into the kernel
// through github.com/google/nftables, one netlink transaction per call.
//
//   - Sync reads doorman's table once (chains, rules, sets, elements),
//     compares it with the rendered view and sends only the differences; a
//     table that is right costs 0 ops. A table whose skeleton has another
//     shape (a set of another type, a base chain on another hook) is replaced
//     whole, atomically. Sync never retires chains: per-K chains no longer
//     used stay (a restart changes nothing in the kernel).
//   - Every commit notes the nftables generation before and after it: when
//     the kernel went from the generation of the dataplane's last own
//     commit to the next one, the commit was its own and nobody else
//     committed in between, and Mark describes what the kernel holds
//     (generation, table handle, a digest of the elements). A Sync while
//     the kernel is still at that generation and the view renders to those
//     elements reads only the table's skeleton back, not the elements (the
//     kernel's dump of a large set costs seconds at 100,000 Services), and
//     renders no elements either: render.Summary gives their digest. Any
//     commit by anyone to any table of the network namespace moves the
//     generation on and brings the full read back. Trust hands a Mark an
//     earlier process recorded (in the agent's cache) to the next Sync.
//   - RetireUnused deletes the per-K chains no programmed entry uses, one
//     transaction each, leaving those still busy (EBUSY) for the next call;
//     the agent's periodic resync calls it.
//   - Apply renders only the changed entries, diffs each entry's old and new
//     elements, and sends those deletes and adds (a changed map element is a
//     delete plus an add in the same transaction), plus a per-K chain the
//     first time K is used. Its cost does not depend on the table's size.
//     It keeps render.Claims from Sync to Sync: an entry that claims a
//     frontend another entry owns is programmed without it, and when the
//     owner changes or goes, the next claimant is rendered and programmed
//     in the same transaction. Sync and Apply report every entry left out,
//     whole or in part (Stats.NotProgrammed).
//   - Inspect reads the table back as nft text for the agent's Inspect
//     service.
//   - Remove deletes the whole table in one transaction, for the agent's
//     --cleanup (uninstall); it is the only call that leaves no table
//     behind.
//
// The kernel's session affinity memory (the dynamic affinity maps) is the
// kernel's own: Sync neither compares nor rewrites its elements; Inspect
// shows them.
//
// Every change is planned first as a Transaction: plain data (add, flush
// or delete a chain, add rules, add or delete elements, replace the table),
// validated, printable as the nft commands it stands for. The planners
// (planSync, planApply, planRetire) take what the kernel holds and what it
// should hold and touch nothing; run is the one method that sends a
// Transaction to the kernel, as one atomic netlink batch. The Fake runs the
// same Transactions on a table held in memory.
//
// Rules carry their nft text and a short hash of their expressions as the
// rule comment (render.Rule.Comment); Sync recognises its rules by both,
// so a rule whose expressions changed under the same text (an upgrade) is
// rewritten. Element messages are split below 64 KiB (16-bit netlink
// attribute lengths) and the socket buffers are enlarged for large batches.
// After a Sync of a large view the freed heap (the table read back, the
// transaction's messages) is returned to the OS at once.
//
// dataplane owns nothing but the table inet doorman; it never lists or
// changes other tables. It must not import gRPC, bbolt or the agent's
// state; it imports render, the wire types and hclog.
package dataplane
