#!/usr/bin/env bash
# run.sh (make e2e-kind): create a kind cluster without kube-proxy, build
# and load doorman's images, apply deploy/overlays/kind, run the e2e suite
# against it (provider kind). Needs a Docker engine; kind itself is run at
# a pinned version through the Go module proxy.
#
#   KIND_NODE_IMAGE   node image (default: kind's default for its version)
#   KEEP_CLUSTER=1    leave the cluster up afterwards
#   E2E_FLAGS         extra flags for go test (e.g. -run NodePort)
set -euo pipefail

KIND_VERSION=v0.33.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "${root}"
kind() { go run "sigs.k8s.io/kind@${KIND_VERSION}" "$@"; }
name=doorman
kubeconfig="$(mktemp -t doorman-kind-XXXXXX.kubeconfig)"

command -v docker >/dev/null || { echo "e2e-kind: needs docker" >&2; exit 1; }
if command -v kubectl >/dev/null; then kubectl_bin=kubectl; else kubectl_bin="$(e2e/hack/build-k8s.sh kubectl)/kubectl"; fi
kubectl() { "${kubectl_bin}" "$@"; }

cleanup() {
  if [ "${KEEP_CLUSTER:-}" != 1 ]; then kind delete cluster --name "${name}" || true; fi
  rm -f "${kubeconfig}"
}
trap cleanup EXIT

image_flag=()
if [ -n "${KIND_NODE_IMAGE:-}" ]; then image_flag=(--image "${KIND_NODE_IMAGE}"); fi
echo "==> kind create cluster (kubeProxyMode: none)"
kind create cluster --name "${name}" --config e2e/kind/cluster.yaml --kubeconfig "${kubeconfig}" "${image_flag[@]}" --wait 0s

echo "==> build and load images"
docker build -f deploy/docker/controlplane.Dockerfile -t doorman.local/controlplane:e2e .
docker build -f deploy/docker/nodeagent.Dockerfile -t doorman.local/nodeagent:e2e .
kind load docker-image --name "${name}" doorman.local/controlplane:e2e doorman.local/nodeagent:e2e

echo "==> apply deploy/overlays/kind"
kubectl --kubeconfig "${kubeconfig}" apply -k deploy/overlays/kind
kubectl --kubeconfig "${kubeconfig}" -n doorman-system rollout status deployment/doorman-controlplane --timeout=5m
kubectl --kubeconfig "${kubeconfig}" -n doorman-system rollout status daemonset/doorman-nodeagent --timeout=5m
# Nodes turn Ready once the CNI runs, which needs Services (doorman) for
# some CNIs: wait for them after doorman is up.
kubectl --kubeconfig "${kubeconfig}" wait --for=condition=Ready nodes --all --timeout=5m

echo "==> e2e suite (provider kind)"
KUBECONFIG="${kubeconfig}" DOORMAN_E2E_PROVIDER=kind \
  go test -tags e2e -count=1 -v -timeout 60m ./e2e/suite/ ${E2E_FLAGS:-}
