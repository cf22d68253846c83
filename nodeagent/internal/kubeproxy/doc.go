// Package kubeproxy removes the rules upstream kube-proxy (v1.36) leaves
// in a node's kernel, for a node that moves from kube-proxy to doorman:
//
//   - nftables mode: the tables ip kube-proxy and ip6 kube-proxy, deleted
//     whole (as kube-proxy --cleanup does);
//   - iptables mode with the iptables-nft backend: kube-proxy's chains in
//     the ip and ip6 tables nat, filter and mangle (KUBE-SERVICES,
//     KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD,
//     KUBE-EXTERNAL-SERVICES, KUBE-PROXY-FIREWALL, KUBE-PROXY-CANARY and the
//     per-Service KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW-, KUBE-SEP-
//     chains), flushed and deleted, and every rule elsewhere that jumps or
//     goes to one of them.
//
// Nothing else is touched: not the kubelet's KUBE-FIREWALL,
// KUBE-KUBELET-CANARY or KUBE-IPTABLES-HINT, not the iptables tables
// themselves, not other rules in the built-in chains. Legacy iptables
// (x_tables) is invisible to nftables and stays: run kube-proxy --cleanup
// for it.
//
// Plan is pure: from the tables, chains and rules it is shown, it decides
// what goes. Remove is the thin shell that lists them through
// github.com/google/nftables in the node's network namespace and deletes
// them in one batch per table. kubeproxy must not import the dataplane.
package kubeproxy
