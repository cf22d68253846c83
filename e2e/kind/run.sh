#!/usr/bin/env bash
# run.sh (make e2e-kind): doorman as users run it. Everything is built on
# this machine, nothing is pulled:
#
#   1. a Docker engine (started by hand when none answers: e2e/kind/docker.sh)
#   2. the Kubernetes binaries and every image the cluster runs
#      (e2e/hack/build-k8s.sh, e2e/kind/images.sh), and kind's node image
#      (e2e/kind/node/build.sh), all cached under $DOORMAN_CACHE
#   3. a 3-node kind cluster without kube-proxy (e2e/kind/cluster.yaml) and
#      its Pod network (e2e/kind/cni.sh)
#   4. doorman applied from deploy/overlays/kind with kubectl, as a user
#      would, and its rollout waited for
#   5. the e2e suite from real Pods, the faults as Pods, the uninstall
#   6. the cluster deleted, the engine stopped if this script started it,
#      and the machine's sysctls put back
#
#   KEEP_CLUSTER=1    leave the cluster (and the engine) up afterwards
#   E2E_FLAGS         extra flags for the suite's go test (e.g. -run NodePort)
#   KIND_FLAGS        extra flags for the kind tests' go test
#   DOORMAN_CACHE     cache directory (default ~/.cache/doorman)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
name=doorman
kubeconfig="${DOORMAN_KIND_KUBECONFIG:-/tmp/doorman-kind.kubeconfig}"
out="${root}/out/kind"
mkdir -p "${cache}/bin" "${out}"

started=$(date +%s)
step_start=${started}
timings=()
step() {
  local now
  now=$(date +%s)
  if [ -n "${step_name:-}" ]; then timings+=("$(printf '%-34s %5ss' "${step_name}" $((now - step_start)))"); fi
  step_name="$1"
  step_start=${now}
  echo "==> e2e-kind: $1"
}
summary() {
  step ""
  echo "==> e2e-kind: time per step"
  printf '    %s\n' "${timings[@]}"
  echo "    total                              $(( $(date +%s) - started ))s"
}

if [ "$(id -u)" != 0 ]; then
  echo "e2e-kind: needs root (Docker engine, privileged node containers)" >&2
  exit 1
fi

step "Docker engine"
bash e2e/kind/docker.sh start

cleanup() {
  rc=$?
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then
    echo "e2e-kind: KEEP_CLUSTER=1: cluster ${name} left up; kubeconfig ${kubeconfig}; stop with: ${kind_bin:-kind} delete cluster --name ${name}; bash e2e/kind/docker.sh stop"
  else
    if [ -n "${kind_bin:-}" ]; then
      "${kind_bin}" export logs --name "${name}" "${out}/logs" >/dev/null 2>&1 || true
      "${kind_bin}" delete cluster --name "${name}" || true
    fi
    bash e2e/kind/docker.sh stop || rc=1
  fi
  summary
  exit "${rc}"
}
trap cleanup EXIT

step "kind"
kind_bin="$(bash e2e/kind/kind-binary.sh | tail -n 1)"

step "Kubernetes binaries"
k8s_bin="$(bash e2e/hack/build-k8s.sh | tail -n 1)"
kubectl() { "${k8s_bin}/kubectl" --kubeconfig "${kubeconfig}" "$@"; }

step "images"
images="$(bash e2e/kind/images.sh control-plane doorman test | tail -n 1)"

step "node image"
node_image="$(bash e2e/kind/node/build.sh | tail -n 1)"

step "cluster"
"${kind_bin}" delete cluster --name "${name}" >/dev/null 2>&1 || true
"${kind_bin}" create cluster --name "${name}" --config e2e/kind/cluster.yaml \
  --image "${node_image}" --kubeconfig "${kubeconfig}" --wait 0s
bash e2e/kind/cni.sh "${name}" "${kubeconfig}"
kubectl wait --for=condition=Ready nodes --all --timeout=5m

step "load images"
for f in "${images}"/doorman-controlplane.tar "${images}"/doorman-nodeagent.tar "${images}"/test-echo.tar; do
  "${kind_bin}" load image-archive --name "${name}" "$f"
done

step "apply deploy/overlays/kind"
kubectl apply -k deploy/overlays/kind
kubectl -n doorman-system rollout status deployment/doorman-controlplane --timeout=5m
kubectl -n doorman-system rollout status daemonset/doorman-nodeagent --timeout=5m
kubectl -n doorman-system get pods -o wide | tee "${out}/pods.txt"

step "e2e suite on kind"
set +e
KUBECONFIG="${kubeconfig}" DOORMAN_E2E_PROVIDER=kind \
  go test -tags e2e -count=1 -v -timeout 40m ./e2e/suite/ ${E2E_FLAGS:-} 2>&1 | tee "${out}/suite.log"
suite_rc=${PIPESTATUS[0]}
set -e

step "faults and uninstall on kind"
set +e
KUBECONFIG="${kubeconfig}" KUBECTL="${k8s_bin}/kubectl" \
  go test -tags e2e -count=1 -v -timeout 30m ./e2e/kind/ ${KIND_FLAGS:-} 2>&1 | tee "${out}/kind.log"
kind_rc=${PIPESTATUS[0]}
set -e

if [ "${suite_rc}" != 0 ] || [ "${kind_rc}" != 0 ]; then
  echo "e2e-kind: FAILED (suite exit ${suite_rc}, faults/uninstall exit ${kind_rc}); logs in ${out}" >&2
  exit 1
fi
echo "e2e-kind: PASS"
