#!/usr/bin/env bash
# cni.sh gives a kind cluster created with `disableDefaultCNI: true` its
# Pod network, the way kindnet would on one Docker bridge, without any
# image and without any Service VIP:
#
#   e2e/kind/cni.sh <cluster-name> <kubeconfig>
#
# On each node (docker exec into the node container):
#   - /etc/cni/net.d/10-doorman-bridge.conflist: the bridge plugin (bridge
#     cni0, the node's gateway address on it, hairpin so a Pod reaches
#     itself through a Service) with host-local IPAM over that Node's
#     spec.podCIDRs, then portmap for hostPort. containerd runs the
#     loopback plugin itself.
#   - a route to every other node's Pod ranges via that node's InternalIP:
#     all nodes sit on the same Docker bridge, so one hop is enough.
# Pods keep their own source address when they talk to other nodes (no
# masquerade): nothing leaves the Docker network, and Services see real
# client addresses.
#
# Idempotent: run it again after a node joins. It waits until every node
# has a Pod range, then until every node is Ready (CNI_READY_TIMEOUT,
# default 180s).
#
# Needs docker and kubectl (from PATH, else e2e/hack/build-k8s.sh kubectl).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <cluster-name> <kubeconfig>" >&2
  exit 2
fi
cluster="$1"
kubeconfig="$2"
timeout="${CNI_READY_TIMEOUT:-180}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

say() { echo "cni: $*" >&2; }

if command -v kubectl >/dev/null; then kubectl_bin=kubectl; else kubectl_bin="$(bash "${root}/e2e/hack/build-k8s.sh" kubectl | tail -n 1)/kubectl"; fi
k() { "${kubectl_bin}" --kubeconfig "${kubeconfig}" "$@"; }

# The node containers kind made for this cluster; kind names each Node
# after its container.
mapfile -t containers < <(docker ps --filter "label=io.x-k8s.kind.cluster=${cluster}" --format '{{.Names}}' | sort)
[ ${#containers[@]} -gt 0 ] || { say "no running node containers for kind cluster ${cluster}"; exit 1; }

# Wait until every node is registered and has its Pod ranges
# (kube-controller-manager allocates them a moment after a node joins).
deadline=$(( $(date +%s) + timeout ))
while :; do
  nodes_json="$(k get nodes -o json)"
  missing=()
  for c in "${containers[@]}"; do
    cidrs="$(jq -r --arg n "${c}" '.items[] | select(.metadata.name == $n) | (.spec.podCIDRs // []) | join(",")' <<<"${nodes_json}")"
    [ -n "${cidrs}" ] || missing+=("${c}")
  done
  [ ${#missing[@]} -eq 0 ] && break
  if [ "$(date +%s)" -ge "${deadline}" ]; then
    say "nodes without a Pod range after ${timeout}s: ${missing[*]} (is the node registered, and does kube-controller-manager allocate node CIDRs?)"
    exit 1
  fi
  sleep 2
done

# The kind network's subnets and the cluster's Pod ranges: the only
# destinations a node may send to (see the egress guard below).
kind_subnets4="$(docker network inspect kind --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep -v ':' | grep . | paste -sd, | sed 's/,/, /g')"
kind_subnets6="$(docker network inspect kind --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' | tr ' ' '\n' | grep ':' | paste -sd, | sed 's/,/, /g')"
pod_ranges4="$(jq -r '[.items[].spec.podCIDRs[]? | select(contains(":") | not)] | join(", ")' <<<"${nodes_json}")"
[ -n "${kind_subnets4}" ] && [ -n "${pod_ranges4}" ] || { say "no kind network subnet or no Pod ranges to guard egress with"; exit 1; }

# node name -> "cidr ip" lines, one per address family.
declare -A routes_of=()
for c in "${containers[@]}"; do
  routes_of["${c}"]="$(jq -r --arg n "${c}" '
    .items[] | select(.metadata.name == $n) |
    [.status.addresses[] | select(.type == "InternalIP") | .address] as $ips |
    .spec.podCIDRs[] as $cidr |
    ($ips | map(select((contains(":")) == ($cidr | contains(":")))) | first) as $ip |
    if $ip == null then error("node \($n): no InternalIP of the family of \($cidr)") else "\($cidr) \($ip)" end
  ' <<<"${nodes_json}")"
done

for c in "${containers[@]}"; do
  conf="$(jq -n --argjson cidrs "$(jq -c --arg n "${c}" '.items[] | select(.metadata.name == $n) | .spec.podCIDRs' <<<"${nodes_json}")" '{
    cniVersion: "1.0.0",
    name: "doorman-bridge",
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [$cidrs[] | [{subnet: .}]],
          routes: [$cidrs[] | {dst: (if contains(":") then "::/0" else "0.0.0.0/0" end)}]
        }
      },
      {type: "portmap", capabilities: {portMappings: true}}
    ]
  }')"
  # Written under a name containerd does not load, then renamed: it must
  # only ever see the whole file. The rename happens inside net.d on
  # purpose: containerd 1.6 reloads on write, rename and remove events in
  # the directory but ignores create events, which is all a file moved in
  # from elsewhere produces.
  docker exec -i "${c}" sh -euc '
    mkdir -p /etc/cni/net.d
    cat >/etc/cni/net.d/.10-doorman-bridge.conflist.tmp
    mv /etc/cni/net.d/.10-doorman-bridge.conflist.tmp /etc/cni/net.d/10-doorman-bridge.conflist
  ' <<<"${conf}"
  for other in "${containers[@]}"; do
    [ "${other}" = "${c}" ] && continue
    while read -r cidr ip; do
      docker exec "${c}" ip route replace "${cidr}" via "${ip}" ||
        { say "node ${c}: route to ${other}'s Pods ${cidr} via ${ip} failed"; exit 1; }
    done <<<"${routes_of[${other}]}"
  done
  # Nothing a test sends may leave the machine. A packet to an address no
  # one here owns (a deleted Service's ClusterIP, an address a test only
  # routes) would otherwise go out through the Docker bridge's gateway and
  # the host's default route. Each node drops what it sends or forwards
  # to anything but the kind network, the Pod ranges and loopback, after
  # Service DNAT (filter hooks run after nat's -100).
  docker exec -i "${c}" nft -f - <<NFT || { say "node ${c}: egress guard failed"; exit 1; }
table inet doorman-e2e-egress
delete table inet doorman-e2e-egress
table inet doorman-e2e-egress {
  set inside4 { type ipv4_addr; flags interval; elements = { 127.0.0.0/8, ${kind_subnets4}, ${pod_ranges4} } }
  chain output { type filter hook output priority 10; policy accept; meta nfproto ipv4 ip daddr != @inside4 counter drop; meta nfproto ipv6 oifname != "lo" ip6 daddr != { fe80::/10, ff00::/8${kind_subnets6:+, ${kind_subnets6}} } counter drop; }
  chain forward { type filter hook forward priority 10; policy accept; meta nfproto ipv4 ip daddr != @inside4 counter drop; meta nfproto ipv6 ip6 daddr != { fe80::/10, ff00::/8${kind_subnets6:+, ${kind_subnets6}} } counter drop; }
}
NFT
  say "node ${c}: Pods on cni0 from $(cut -d' ' -f1 <<<"${routes_of[${c}]}" | paste -sd,), routes to the other $(( ${#containers[@]} - 1 )) nodes"
done

left=$(( deadline - $(date +%s) ))
[ "${left}" -gt 10 ] || left=10
k wait --for=condition=Ready nodes --all --timeout="${left}s" >&2 ||
  { say "nodes not Ready; see 'docker exec <node> journalctl -u kubelet' and 'docker exec <node> journalctl -u containerd'"; exit 1; }
say "all ${#containers[@]} nodes Ready"
