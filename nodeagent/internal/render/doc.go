// Package render turns a node's view (the Node entry and ServicePort
// entries of proto/doorman/v1) into doorman's nftables table as plain data:
// sets and maps with typed elements in kernel byte layout, chains with rules
// built from github.com/google/nftables/expr values, each rule carrying the
// nft text it stands for. It is pure: values in, values out. It must not
// import netlink, gRPC, bbolt, logging or the clock; it imports the
// nftables expr package only for its data types.
//
// # Layout
//
// One table, inet doorman. Every chain is static or exists once per endpoint
// count K; Services exist only as map elements, so a packet's path and a
// change's cost do not depend on how many Services there are:
//
//	services:            ip daddr . meta l4proto . th dport vmap @service-ips
//	                     (and ip6 … @service-ips6)
//	                     ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
//	                     (and ip6 … @nodeport-ips6 … @service-nodeports6)
//	service-K:           dnat ip to ip daddr . meta l4proto . th dport . numgen random mod K map @service-endpoints
//	nodeport-K:          meta mark set meta mark | 0x4000
//	                     dnat ip to meta l4proto . th dport . numgen random mod K map @nodeport-endpoints
//	nat-postrouting:     masquerade what carries mark 0x4000 (clearing it)
//	endpoints-check:     no-endpoint-services / no-endpoint-nodeports vmaps → goto reject-chain
//	cluster-ips-check:   ip daddr @cluster-ips goto reject-chain
//	reject-chain:        TCP reset, else ICMP port unreachable
//
// nat-prerouting and nat-output (priority dstnat) jump to services.
// filter-input, filter-forward and filter-output (dstnat - 10) jump to
// endpoints-check for new connections, so a Service without endpoints is
// refused before DNAT would look at it. filter-forward and
// filter-output-post-dnat (dstnat + 10) jump to cluster-ips-check: whatever
// is still addressed to a ClusterIP after DNAT asked for a port the Service
// does not have.
//
// IPv4 and IPv6 have separate sets and maps; the K chains hold one rule per
// family. NodePort maps are per family too, because the IPv4 and IPv6
// entries of one Service share a nodePort but may have different endpoint
// counts.
//
// # Ownership and changes
//
// Entry renders one entry to the elements it owns (Objects) and the K
// chains those elements jump to; Diff of two Objects gives the deletes and
// adds that move the kernel from one to the other, so a change of one entry
// touches only that entry's elements. Elements are exclusive to one entry,
// except ClusterIPs in cluster-ips(6) and node addresses in
// nodeport-ips(6), which several entries (ports of one Service) share: they
// are marked Shared and the dataplane counts their owners. View renders a
// whole view (for a full reconcile and golden tests) and reports entries it
// must leave out.
//
// # Later semantics in the same layout
//
// Each fits as sets, maps and static chains, never a rule per Service:
//
//   - externalIPs and LoadBalancer IPs: more elements in service-ips(6)
//     keyed by that address . proto . port, jumping to an "external-K"
//     chain (like nodeport-K: mark for masquerade, then DNAT through an
//     external-endpoints map keyed by address . proto . port . index), and
//     in no-endpoint-services(6) when there are no endpoints.
//   - loadBalancerSourceRanges: a filter-prerouting chain (dstnat - 10)
//     with "ip daddr . meta l4proto . th dport vmap @firewall-ips" whose
//     elements goto a firewall-allow check: "ip daddr . meta l4proto .
//     th dport . ip saddr @firewall-allow return" (an interval set with
//     concatenated prefixes) then drop.
//   - externalTrafficPolicy Local: the external vmap element of the
//     Service points at an "external-local-K" chain (K = number of
//     local_endpoints) that DNATs through external-local-endpoints without
//     setting the masquerade mark; with no local endpoint the element is
//     "drop" in no-endpoint-services / no-endpoint-nodeports. Traffic from
//     Pods and the node keeps the cluster-wide maps: a "ip saddr @pod-cidrs"
//     / "fib saddr type local" rule ahead of the external dispatch sends it
//     to the cluster chains.
//   - internalTrafficPolicy Local: ClusterIP elements point at the same
//     service-K chains with K = local endpoint count and endpoint elements
//     drawn from the local endpoints only (the control plane already sends
//     them that way); no local endpoints gives a "drop" element in
//     no-endpoint-services.
//   - sessionAffinity ClientIP: the Service's service-ips element points
//     at "affinity-K" instead of service-K; affinity-K first looks up
//     "ip saddr . ip daddr . meta l4proto . th dport" in a dynamic map
//     with timeouts (affinity) and DNATs to the remembered endpoint,
//     otherwise picks with numgen as service-K and records the choice with
//     "update @affinity { … timeout T }". Per-Service timeouts are carried
//     by the element's timeout, so the chain stays shared.
//   - hairpin (a Pod reaching itself through its Service): nft cannot
//     compare two header fields, so a set hairpin-pairs holds
//     "endpoint . endpoint" for every endpoint address (shared elements), and
//     one static rule in nat-postrouting, "ct status dnat ip saddr . ip daddr
//     @hairpin-pairs masquerade", covers every Service.
//
// Conflicts: an exclusive element claimed by two entries (two Services with
// one externalIP and port) is given to the first entry in key order by View;
// the later one is reported Invalid.
package render
