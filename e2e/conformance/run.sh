#!/usr/bin/env bash
# run.sh (make conformance): Kubernetes' own sig-network e2e tests
# (k8s.io/kubernetes v1.36.3, test/e2e) against doorman on kind, then the
# same selection against an identical kind cluster where upstream kube-proxy
# v1.36.3 runs in nftables mode, deployed by kubeadm as kind deploys it;
# one table of both results.
#
#   e2e/conformance/run.sh                  # both proxies (default)
#   e2e/conformance/run.sh doorman          # doorman only
#   e2e/conformance/run.sh kube-proxy       # kube-proxy only
#
# Everything is built here, nothing is pulled: upstream's e2e suite with its sig-network specs and ginkgo
# (build.sh), the images the tests start (images.sh), the cluster's images
# and node image (e2e/kind/images.sh, e2e/kind/node/build.sh).
#
# Environment:
#   CONFORMANCE_SUBSET  full (default): focus \[sig-network\], skip.txt
#                       focused: the sig-network [Conformance] tests plus
#                       session affinity, health check node port,
#                       terminating endpoints and kube-proxy URL tests
#                       (what `make test` runs)
#   CONFORMANCE_FOCUS   a regexp replacing the subset's focus
#   GINKGO_NODES        parallel ginkgo processes (default 4)
#   ZONE_WORKERS        schedulable workers in each of the three zones
#                       (default 1: 4 nodes with the control plane); the
#                       Traffic Distribution tests need 2 (7 nodes) and
#                       skip themselves with fewer
#   DOORMAN_KUBECONFIG  a kind cluster that already runs doorman (its
#                       cluster name in DOORMAN_KIND_NAME, default doorman):
#                       used as is and left up; without it run.sh creates
#                       doorman-conformance from e2e/kind/cluster.yaml and
#                       deploys deploy/overlays/kind
#   KEEP_CLUSTERS=1     leave the clusters run.sh created
#   CONFORMANCE_OUT     output directory (default out/conformance)
#   DOORMAN_CACHE       cache directory (default ~/.cache/doorman)
#
# Writes, under the output directory: <proxy>/report.json (ginkgo's JSON
# report), <proxy>/junit.xml, <proxy>/ginkgo.log, <proxy>/selected.txt
# (the dry run's list), results.json and results.md. Exits 1 when doorman
# does not pass a test kube-proxy passes (or, run alone, fails any test).
set -euo pipefail
shopt -s inherit_errexit

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
here="${root}/e2e/conformance"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
out="${CONFORMANCE_OUT:-${root}/out/conformance}"
subset="${CONFORMANCE_SUBSET:-full}"
nodes="${GINKGO_NODES:-4}"
zone_workers="${ZONE_WORKERS:-1}"
case "${zone_workers}" in [1-9]) ;; *) die "ZONE_WORKERS=${zone_workers}: want 1 to 9" ;; esac
mkdir -p "${out}" "${cache}/bin"

say() { echo "==> conformance: $*" >&2; }
die() { echo "conformance: $*" >&2; exit 1; }

proxies=("$@")
if [ ${#proxies[@]} -eq 0 ]; then proxies=(doorman kube-proxy); fi
for p in "${proxies[@]}"; do
  case "${p}" in doorman|kube-proxy) ;; *) die "unknown proxy ${p} (want doorman or kube-proxy)" ;; esac
done
[ "$(id -u)" = 0 ] || die "needs root (Docker engine, privileged node containers, debootstrap)"

# --- the selection ---------------------------------------------------------

# skip_regexp: skip.txt's regexps (one per line, '# reason' after them)
# joined into one alternation.
skip_regexp() {
  sed -e 's/[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d' "${here}/skip.txt" | paste -sd '|'
}
case "${subset}" in
  full)
    focus='\[sig-network\]'
    ;;
  focused)
    # sig-network's [Conformance] tests, and the behaviours a proxy owns
    # that conformance leaves out: session affinity (and its timeout),
    # health check node ports, terminating endpoints, the proxy's own
    # health and mode URLs.
    focus='\[sig-network\].*(\[Conformance\]|(?i:session affinity|health ?check ?node ?port|terminating|kube-proxy urls))'
    ;;
  *) die "CONFORMANCE_SUBSET=${subset}: want full or focused" ;;
esac
focus="${CONFORMANCE_FOCUS:-${focus}}"
skip="$(skip_regexp)"
[ -n "${skip}" ] || die "skip.txt yields no regexp"

# --- build -----------------------------------------------------------------

say "e2e-sig-network.test and ginkgo"
k8s_bin="$(bash "${here}/build.sh" e2e-sig-network.test ginkgo | tail -n 1)"
e2e_test="${k8s_bin}/e2e-sig-network.test"
ginkgo="${k8s_bin}/ginkgo"
kubectl_bin="$(bash e2e/hack/build-k8s.sh kubectl | tail -n 1)/kubectl"

table="${cache}/bin/conformance-table"
(cd "${root}" && go build -o "${table}" ./e2e/conformance/table)

say "test images"
conf_images="$(bash "${here}/images.sh" | tail -n 1)"

# --- clusters --------------------------------------------------------------

engine_was_up=0
if docker info >/dev/null 2>&1; then engine_was_up=1; fi
bash e2e/kind/docker.sh start

kind_bin="$(bash e2e/kind/kind-binary.sh | tail -n 1)"

created=()
cleanup() {
  local rc=$?
  for c in "${created[@]}"; do
    if [ "${KEEP_CLUSTERS:-}" = 1 ]; then
      echo "conformance: KEEP_CLUSTERS=1: cluster ${c} left up (${kind_bin} delete cluster --name ${c})" >&2
      continue
    fi
    "${kind_bin}" export logs --name "${c}" "${out}/logs-${c}" >/dev/null 2>&1 || true
    "${kind_bin}" delete cluster --name "${c}" >&2 || true
  done
  # Stop the engine only if nobody else had it running.
  if [ "${engine_was_up}" = 0 ] && [ "${KEEP_CLUSTERS:-}" != 1 ]; then bash e2e/kind/docker.sh stop || rc=1; fi
  exit "${rc}"
}
trap cleanup EXIT

node_image=
# create_cluster NAME KUBECONFIG PROXY-MODE: a cluster like e2e-kind's (same
# node image, CNI and nodes); PROXY-MODE none leaves Services to doorman,
# nftables has kubeadm deploy kube-proxy in nftables mode.
create_cluster() {
  local name="$1" kubeconfig="$2" mode="$3" cfg
  if [ -z "${node_image}" ]; then
    bash e2e/kind/images.sh control-plane >/dev/null
    node_image="$(bash e2e/kind/node/build.sh | tail -n 1)"
  fi
  cfg="${out}/kind-${name}.yaml"
  # e2e-kind's cluster plus a third worker in the control plane's zone:
  # the HealthCheckNodePort test needs three schedulable nodes, and the
  # topology-hints test one schedulable node in each zone (the EndpointSlice
  # controller leaves control-plane nodes out of its zone capacities, so
  # untainting the control plane would not do). ZONE_WORKERS=N adds N-1
  # more workers to each zone.
  local i z
  sed -e "s/^\([[:space:]]*kubeProxyMode:\).*/\1 ${mode}/" -e "s/^name: .*/name: ${name}/" e2e/kind/cluster.yaml >"${cfg}"
  grep -q "kubeProxyMode: ${mode}\$" "${cfg}" || die "could not set kubeProxyMode ${mode} in ${cfg}"
  [ "$(tail -n 1 "${cfg}")" = "      topology.kubernetes.io/zone: zone-c" ] ||
    die "e2e/kind/cluster.yaml no longer ends with its last worker: the extra workers in ${cfg} would land elsewhere"
  {
    printf '  - role: worker\n    labels:\n      topology.kubernetes.io/zone: zone-a\n'
    for ((i = 1; i < zone_workers; i++)); do
      for z in a b c; do printf '  - role: worker\n    labels:\n      topology.kubernetes.io/zone: zone-%s\n' "${z}"; done
    done
  } >>"${cfg}"
  "${kind_bin}" delete cluster --name "${name}" >/dev/null 2>&1 || true
  created+=("${name}")
  "${kind_bin}" create cluster --name "${name}" --config "${cfg}" \
    --image "${node_image}" --kubeconfig "${kubeconfig}" --wait 0s
  bash e2e/kind/cni.sh "${name}" "${kubeconfig}"
  "${kubectl_bin}" --kubeconfig "${kubeconfig}" wait --for=condition=Ready nodes --all --timeout=5m
}

load_images() {
  local name="$1" f
  for f in "${conf_images}"/conformance-*.tar; do
    "${kind_bin}" load image-archive --name "${name}" "${f}" >&2
  done
}

# --- one run ---------------------------------------------------------------

# run_tests PROXY KUBECONFIG: the dry run's list, then the selection.
run_tests() {
  local proxy="$1" kubeconfig="$2" dir="${out}/$1" rc=0 t
  rm -rf "${dir}"
  mkdir -p "${dir}"
  # What ginkgo will run, with the same focus and skip, without touching
  # the cluster.
  "${ginkgo}" --dry-run --no-color --silence-skips --focus="${focus}" --skip="${skip}" \
    --output-dir="${dir}" --json-report=dry-run.json "${e2e_test}" -- \
    --provider=local --kubeconfig="${kubeconfig}" >"${dir}/dry-run.log" 2>&1 ||
    die "${proxy}: ginkgo --dry-run failed (see ${dir}/dry-run.log)"
  "${table}" -list "${dir}/dry-run.json" >"${dir}/selected.txt"
  # The dry run's report lists every spec of the suite (7,500 and more).
  rm -f "${dir}/dry-run.json"
  say "${proxy}: $(wc -l <"${dir}/selected.txt") tests selected (focus ${focus}), ginkgo --nodes=${nodes}"
  # Tests that need several nodes read the count from --num-nodes and skip
  # themselves when it is unset: the nodes without a NoSchedule taint.
  local schedulable
  schedulable="$("${kubectl_bin}" --kubeconfig "${kubeconfig}" get nodes \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.spec.taints[?(@.effect=="NoSchedule")].key}{"\n"}{end}' |
    awk 'NF == 1' | wc -l)"
  [ "${schedulable}" -gt 0 ] || die "${proxy}: no schedulable node in ${kubeconfig}"
  say "${proxy}: ${schedulable} schedulable nodes"
  t=$(date +%s)
  KUBERNETES_CONFORMANCE_TEST=y "${ginkgo}" --nodes="${nodes}" --no-color --silence-skips \
    --focus="${focus}" --skip="${skip}" \
    --timeout=3h --poll-progress-after=5m \
    --output-dir="${dir}" --json-report=report.json --junit-report=junit.xml \
    "${e2e_test}" -- \
    --kubeconfig="${kubeconfig}" --provider=local --report-dir="${dir}" --disable-log-dump \
    --num-nodes="${schedulable}" \
    2>&1 | tee "${dir}/ginkgo.log" >&2 || rc=$?
  say "${proxy}: ginkgo exit ${rc} after $(( $(date +%s) - t ))s"
  [ -s "${dir}/report.json" ] || die "${proxy}: ginkgo wrote no ${dir}/report.json (see ${dir}/ginkgo.log)"
}

# done_with NAME: delete a cluster run.sh created once its run is over, so
# only one cluster runs at a time on a small machine.
done_with() {
  local name="$1" c keep=()
  [ "${KEEP_CLUSTERS:-}" = 1 ] && return 0
  "${kind_bin}" export logs --name "${name}" "${out}/logs-${name}" >/dev/null 2>&1 || true
  "${kind_bin}" delete cluster --name "${name}" >&2
  for c in "${created[@]}"; do [ "${c}" = "${name}" ] || keep+=("${c}"); done
  created=("${keep[@]}")
}

# --- the runs --------------------------------------------------------------

table_args=()
for p in "${proxies[@]}"; do
  case "${p}" in
    doorman)
      if [ -n "${DOORMAN_KUBECONFIG:-}" ]; then
        kc="${DOORMAN_KUBECONFIG}"
        name="${DOORMAN_KIND_NAME:-doorman}"
        "${kubectl_bin}" --kubeconfig "${kc}" -n doorman-system get daemonset/doorman-nodeagent >/dev/null ||
          die "DOORMAN_KUBECONFIG=${kc}: no doorman-nodeagent DaemonSet in doorman-system"
        say "doorman: using cluster ${name} (${kc})"
      else
        name=doorman-conformance
        kc="${out}/${name}.kubeconfig"
        say "doorman: creating cluster ${name}"
        bash e2e/kind/images.sh doorman >/dev/null
        create_cluster "${name}" "${kc}" none
        images="${cache}/kind/images"
        for f in "${images}"/doorman-*.tar; do "${kind_bin}" load image-archive --name "${name}" "${f}" >&2; done
        # deploy/overlays/kind as is, but for this cluster's name: its API
        # server is the node container ${name}-control-plane.
        "${kubectl_bin}" kustomize deploy/overlays/kind |
          sed "s#https://doorman-control-plane:6443#https://${name}-control-plane:6443#" |
          "${kubectl_bin}" --kubeconfig "${kc}" apply -f - >&2
        "${kubectl_bin}" --kubeconfig "${kc}" -n doorman-system rollout status deployment/doorman-controlplane --timeout=5m >&2
        "${kubectl_bin}" --kubeconfig "${kc}" -n doorman-system rollout status daemonset/doorman-nodeagent --timeout=5m >&2
      fi
      load_images "${name}"
      run_tests doorman "${kc}"
      table_args+=(-doorman "${out}/doorman/report.json")
      # A cluster run.sh did not create is left as it was found.
      if [ -z "${DOORMAN_KUBECONFIG:-}" ]; then done_with "${name}"; fi
      ;;
    kube-proxy)
      name=doorman-kp
      kc="${out}/${name}.kubeconfig"
      say "kube-proxy: creating cluster ${name} (kubeProxyMode nftables)"
      create_cluster "${name}" "${kc}" nftables
      # kubeadm started kube-proxy from the node image's preload, which has
      # no nft: replace the image under the same name, then the Pods.
      "${kind_bin}" load image-archive --name "${name}" "${cache}/kind/conformance/kube-proxy-nftables.tar" >&2
      "${kubectl_bin}" --kubeconfig "${kc}" -n kube-system delete pod -l k8s-app=kube-proxy --timeout=2m >&2
      "${kubectl_bin}" --kubeconfig "${kc}" -n kube-system rollout status daemonset/kube-proxy --timeout=5m >&2
      "${kubectl_bin}" --kubeconfig "${kc}" -n kube-system wait pod -l k8s-app=kube-proxy --for=condition=Ready --timeout=5m >&2
      "${kubectl_bin}" --kubeconfig "${kc}" -n kube-system get configmap kube-proxy -o jsonpath='{.data.config\.conf}' |
        grep -q '^mode: nftables$' || die "kube-proxy in ${name} is not in nftables mode"
      load_images "${name}"
      run_tests kube-proxy "${kc}"
      table_args+=(-kube-proxy "${out}/kube-proxy/report.json")
      done_with "${name}"
      ;;
  esac
done

# --- the table -------------------------------------------------------------

say "results"
"${table}" "${table_args[@]}" \
  -json "${out}/results.json" -md "${out}/results.md" \
  -command "CONFORMANCE_SUBSET=${subset}${CONFORMANCE_FOCUS:+ CONFORMANCE_FOCUS='${CONFORMANCE_FOCUS}'} GINKGO_NODES=${nodes}${ZONE_WORKERS:+ ZONE_WORKERS=${zone_workers}} e2e/conformance/run.sh ${proxies[*]} ($(date -u +%Y-%m-%d))"
