// Package followup runs what must follow each committed kernel
// transaction of the agent: deleting the UDP conntrack entries the change
// made stale, and updating the healthCheckNodePort servers. Kernel wraps
// the agent's Kernel: after an Apply or Sync that committed, it hands the
// changes to a Cleaner and the health-checked entries to a Health; their
// errors are logged and counted, never returned (the kernel's rules are
// right, so the update is still acknowledged).
//
// It keeps the view the kernel was last committed with, to know what a
// Sync changed (a Sync is O(view) anyway) and which entries carry a health
// check node port; an Apply costs O(changes). The first Sync only records
// the view: at start-up nothing changed, and cleaning would break flows a
// restart must keep.
//
// Changes is pure. followup imports the dataplane's types, the agent's
// Kernel interface and the wire API; it must not import netlink, nftables,
// gRPC or bbolt (the Cleaner and Health behind its interfaces do that).
package followup
