// Package render turns a node's view (the Node entry and ServicePort
// entries of proto/doorman/v1) into doorman's nftables table as plain data:
// sets and maps with typed elements in kernel byte layout, chains with rules
// built from github.com/google/nftables/expr values, each rule carrying the
// nft text it stands for: exactly what `nft list` prints for those
// expressions (kernel tests check it), and, with a hash of the
// expressions, the rule's comment in the kernel (Rule.Comment), by which
// the dataplane recognises rules that are its own and current. The golden
// files in testdata are files `nft -c -f` reads. It is pure: values in,
// values out. It must not import netlink, gRPC, bbolt, logging or the
// clock; it imports the nftables expr package only for its data types (and
// their netlink encoding, for the hash).
//
// # Layout
//
// One table, inet doorman. Every chain is static, exists once per endpoint
// count K, or (session affinity only) once per endpoint address, port and
// timeout; Services exist only as map elements, so a packet's path and a
// change's cost do not depend on how many Services there are:
//
//	services:            ip daddr @cluster-ips ip saddr != @pod-cidrs meta mark set meta mark | 0x00004000
//	                     (the local test as Options say; every ClusterIP with MasqueradeAll)
//	                     ip daddr . meta l4proto . th dport vmap @service-ips
//	                     (and ip6 … @service-ips6)
//	                     ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
//	                     (and ip6 … @nodeport-ips6 … @service-nodeports6)
//	service-K:           dnat ip to ip daddr . meta l4proto . th dport . numgen random mod K map @service-endpoints
//	                     (external-K, local-K, nodeport-local-K, nodeport-internal-K and the
//	                     "-affinity-T" variants alike: see ChainKind)
//	nodeport-K:          meta mark set meta mark | 0x00004000
//	                     dnat ip to meta l4proto . th dport . numgen random mod K map @nodeport-endpoints
//	nat-postrouting:     masquerade what carries mark 0x4000 (clearing it)
//	endpoints-check:     no-endpoint-services / no-endpoint-nodeports vmaps → goto reject-chain
//	cluster-ips-check:   ip daddr @cluster-ips goto reject-chain
//	                     ip daddr @service-cidrs drop
//	reject-chain:        TCP reset, else ICMP port unreachable
//
// nat-output-localhost (nat output, dstnat) DNATs the node's own packets
// to 127.0.0.0/8:<nodePort> through service-nodeports, with
// Options.LocalhostNodePorts only; filter-input-localnet drops packets to
// 127.0.0.0/8 from other hosts (CVE-2020-8558), always (see localhost.go).
//
// nat-prerouting and nat-output (priority dstnat) jump to services.
// filter-input, filter-forward and filter-output (dstnat - 10) jump to
// endpoints-check for new connections, so a Service without endpoints is
// refused before DNAT would look at it. filter-forward and
// filter-output-post-dnat (dstnat + 10) jump to cluster-ips-check: whatever
// is still addressed to a ClusterIP after DNAT asked for a port the Service
// does not have, and is refused; whatever is still addressed to the
// cluster's Service CIDRs (service-cidrs, from the Node entry, filled from
// ServiceCIDR objects) asked for an address no Service holds, and is
// dropped, rather than routed on and off the node.
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
// touches only that entry's elements (Claims.Plan adds the few entries
// whose contested frontends change hands). Elements are exclusive to one
// entry, except ClusterIPs in cluster-ips(6) and node addresses in
// nodeport-ips(6), which several entries (ports of one Service) share: they
// are marked Shared and the dataplane counts their owners. View renders a
// whole view (for a full reconcile and golden tests) and reports entries it
// must leave out, whole or in part; a large view is rendered in parts, one
// per CPU. Summary is View without the elements: what a reconcile keeps
// (owners, claims, chain users) and a digest of the elements, for a
// kernel that may hold them already.
//
// # Every Service semantic in the same layout
//
// Each is sets, maps and static chains, never a rule per Service; the
// testdata/kinds.nft golden file shows a Service of every kind:
//
//   - externalIPs and LoadBalancer IPs: elements in service-ips(6) keyed
//     by that address . proto . port. Under Cluster policy they go to
//     "external-K" (masquerade mark, then DNAT through service-endpoints
//     keyed by that frontend).
//   - externalTrafficPolicy Local (external addresses and NodePorts): the
//     dispatch element goes to the static chain local-ips / local-nodeports,
//     which sends local Pods (by default sources in @pod-cidrs; see
//     Options for the other local traffic tests), and the node itself (marked for
//     masquerade), through local-internal-* (every endpoint: service-K,
//     nodeport-internal-K) and everything else through local-external-*
//     ("local-K" / "nodeport-local-K": the local endpoints, stored in the
//     same endpoint maps from index 65536, picked with numgen offset, no
//     masquerade; "drop" when the node has none).
//   - ClusterIP traffic that is not from a local Pod (a client routed to a
//     ClusterIP from outside, the node itself) is marked for masquerade
//     ahead of the dispatch, one static rule per family, as kube-proxy
//     does, so replies come back through this node; all of it with
//     Options.MasqueradeAll.
//   - No endpoints: the frontend's element in no-endpoint-services /
//     no-endpoint-nodeports goes to reject-chain; with internalTrafficPolicy
//     Local it is "drop" (the Service may have endpoints on other nodes, as
//     upstream).
//   - loadBalancerSourceRanges: filter-prerouting and filter-output
//     (dstnat - 10) jump to firewall-check: "ip daddr . meta l4proto . th
//     dport @firewall-ips ip daddr . meta l4proto . th dport . ip saddr !=
//     @firewall-allow drop" (a concatenated interval set).
//   - sessionAffinity ClientIP: the dispatch element goes to the same chain
//     kind with "-affinity-T" (T the timeout). It asks each of the
//     frontend's endpoints in turn, through affinity-members (frontend .
//     index → jump affinity-<proto>-<endpoint>-T), whether the kernel
//     remembers the client there: the set affinity-<proto> holds "client .
//     frontend address . port . endpoint" with a per-element timeout T,
//     refreshed on every new connection; the first endpoint that does
//     DNATs. Else numgen picks an index from 131072 on, whose element goes
//     to affinity-pick-<proto>-<endpoint>-T: remember, DNAT. A removed
//     endpoint's member elements go with it, so its memory is not read
//     while it is out of the Service. The memory itself stays until its
//     timeout: an endpoint that comes back within T finds its clients
//     again, also those sent elsewhere meanwhile when it comes first in
//     the walk (upstream deletes the memory with the endpoint; the set
//     cannot be searched by endpoint). It is how upstream's nftables mode
//     remembers (a set of clients per endpoint) and costs up to K lookups
//     per new connection:
//     nft 1.0.6 aborts listing a rule that feeds a map lookup's result into
//     another lookup or a set update (netlink_parse_concat_expr: Assertion
//     "consumed > 0"), so "the endpoint remembered for this client", read
//     from a map, can be neither checked nor stored in the kernel's own
//     rules. Services without affinity never reach these chains.
//   - hairpin: hairpin-pairs holds "endpoint . endpoint" for every endpoint
//     address (shared elements); one static rule in nat-postrouting, "ct
//     status dnat ip saddr . ip daddr @hairpin-pairs masquerade", covers
//     every Service.
//   - internalTrafficPolicy Local and topology need nothing of their own:
//     the control plane sends the endpoints already chosen. The endpoint
//     sets: ClusterIP traffic uses "endpoints"; the cluster-wide set is
//     "cluster_endpoints" under internalTrafficPolicy Local, else
//     "endpoints"; external frontends (NodePorts, externalIPs, LB IPs) use
//     the cluster-wide set at index 0 (and the local endpoints from
//     index 65536 under externalTrafficPolicy Local). So a NodePort keeps
//     reaching every endpoint while its ClusterIP drops for want of a
//     local one; when the cluster-wide set is empty too, every frontend
//     rejects.
//
// # Conflicts
//
// ClusterIPs, externalIPs and LoadBalancer IPs share service-ips(6), so
// two entries may claim one frontend (address . protocol . port, or a
// nodePort): a tenant's externalIP naming another namespace's ClusterIP,
// two Services listing one externalIP. Claims decides who owns it:
//
//   - a ClusterIP (or nodePort) claim wins over an externalIP or
//     LoadBalancer IP claim, whatever the keys' order: an address the API
//     server allocated is never taken by one a Service's author wrote
//     (the CVE-2020-8554 class);
//   - between claims of one rank the first key wins. Upstream kube-proxy
//     (nftables mode, v1.36) has no rule here: the Service written last
//     in a sync, in map order, takes the element, so the owner can change
//     from one sync to the next; the first key gives every node the same
//     owner.
//
// The loser is programmed without that frontend only (its dispatch,
// endpoint, policy, firewall and affinity elements, which all start with
// the frontend's key); its other frontends work, and it is reported in
// Table.Refused and by Claims.Refused with both names:
//
//	entry "aaa/evil:53/udp/ipv4": externalIP 10.96.0.10:53/udp is the ClusterIP of "kube-system/kube-dns:53/udp/ipv4"
//
// An entry that cannot be rendered at all is left out whole
// (Table.Invalid).
//
// Ownership depends only on who claims, never on the order of arrival, so
// an update applied with Claims.Plan leaves the same table as View of the
// whole view: a Plan renders the changed entries, hands each frontend they
// free to the next claimant and each frontend they win from its owner,
// and returns a Move for every entry concerned, changed or not. An entry
// refused for a conflict is thus programmed by the very update that
// removes or changes the entry that blocked it.
package render
