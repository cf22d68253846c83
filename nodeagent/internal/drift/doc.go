// Package drift notices when someone else changes doorman's nftables table
// and has the agent put it back. It is a thin shell around two things:
//
//   - a netlink subscriber to the kernel's nftables events (the
//     NFNLGRP_NFTABLES group) in the node's network namespace, which reads
//     only the table name of each event and the generation and netlink port
//     of each commit, and asks the agent's Commits whether a commit that
//     touched doorman's table was the agent's own;
//   - a loop that turns foreign commits and lost events into one debounced
//     Agent.Resync, and resyncs on a long period as a backstop (a Sync reads
//     the whole table: never per update).
//
// Kernel wraps the dataplane so that each of the agent's own transactions is
// bracketed by the nftables generation before and after it. Every decision
// (is a commit foreign, was a resync a repair) is the agent package's.
//
// drift may import the agent, the dataplane's types, render's table name and
// netlink; it must not import gRPC, bbolt or the agent's state.
package drift
