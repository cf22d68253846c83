// Package conntrack deletes stale UDP conntrack entries after the dataplane
// changed, as kube-proxy does: UDP has no connection to end, so without
// this a client keeps talking to an endpoint that left its Service (or to
// the reject path of a Service that had none) until the entry times out.
//
// Plan is pure: from the changes of a committed Apply it decides which
// entries must go (a removed endpoint, or one whose target port changed,
// per frontend: ClusterIP, externalIP or LoadBalancer IP and port, or
// NodePort; every entry toward a frontend that gains its first endpoint). Cleaner is the thin netlink shell that
// deletes them, in the node's network namespace, through
// github.com/vishvananda/netlink.
//
// Settings and Apply set the conntrack sysctls kube-proxy sets at start
// (table size, TCP established and CLOSE_WAIT timeouts, be_liberal, UDP
// timeouts), with its flags' meanings and defaults; Settings.Wanted is the
// pure part, Apply reads and writes /proc/sys/net/netfilter in the node's
// namespace and logs each sysctl. Before Apply first changes a sysctl it
// records the value it found (record.go, a JSON file beside the agent's
// cache that survives restarts); Restore, run by --cleanup, puts back
// each recorded value doorman's still holds and deletes the record.
//
// conntrack imports the dataplane only for its Change type and the wire
// types; it must not import nftables, gRPC or the agent's state.
package conntrack
