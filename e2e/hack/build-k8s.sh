#!/usr/bin/env bash
# build-k8s.sh builds the Kubernetes components and etcd the local clusters
# run, from source through the Go module proxy, at the versions pinned in
# e2e/k8sbuild/go.mod and e2e/etcdbuild/go.mod. Binaries go to a cache
# outside the clone so every run, the demo and CI reuse them:
#
#   ${DOORMAN_CACHE:-$HOME/.cache/doorman}/k8s-v1.36.3/bin
#
# Only missing binaries are built; a second run does nothing. Usage:
#
#   e2e/hack/build-k8s.sh [binary ...]   # default: what the netns cluster runs
#
# The default set is what the netns cluster needs. The kind node image
# (e2e/kind/node/build.sh) also needs kubelet and kubeadm, and the kind
# control-plane images kube-scheduler; name them to build them.
#
# Prints the bin directory on its last line.
set -euo pipefail

K8S_VERSION=v1.36.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
bin="${cache}/k8s-${K8S_VERSION}/bin"
mkdir -p "${bin}"

default=(etcd kube-apiserver kube-controller-manager kube-proxy kubectl)
all=("${default[@]}" kube-scheduler kubelet kubeadm)
want=("$@")
if [ ${#want[@]} -eq 0 ]; then want=("${default[@]}"); fi

version_flags="-X k8s.io/component-base/version.gitVersion=${K8S_VERSION}
 -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=36
 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}
 -X k8s.io/client-go/pkg/version.gitMajor=1
 -X k8s.io/client-go/pkg/version.gitMinor=36"

missing=()
for b in "${want[@]}"; do
  case "$b" in
    etcd|kube-apiserver|kube-controller-manager|kube-proxy|kubectl|kube-scheduler|kubelet|kubeadm) ;;
    *) echo "build-k8s: unknown binary $b (want one of ${all[*]})" >&2; exit 2 ;;
  esac
  if [ -x "${bin}/$b" ]; then continue; fi
  missing+=("$b")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "build-k8s: all present in ${bin}" >&2
  echo "${bin}"
  exit 0
fi

echo "build-k8s: building ${missing[*]} into ${bin} (first build takes several minutes per binary on 2 cores)" >&2
start_all=$(date +%s)
i=0
for b in "${missing[@]}"; do
  i=$((i + 1))
  start=$(date +%s)
  echo "build-k8s: [$i/${#missing[@]}] $b ..." >&2
  # A ticker so a long compile is visibly alive.
  ( while sleep 30; do echo "build-k8s:   $b still compiling, $(( $(date +%s) - start ))s" >&2; done ) &
  ticker=$!
  tmp="${bin}/.$b.tmp.$$"
  set +e
  if [ "$b" = etcd ]; then
    (cd "${here}/etcdbuild" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "${tmp}" .)
  else
    (cd "${here}/k8sbuild" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w ${version_flags}" -o "${tmp}" "k8s.io/kubernetes/cmd/$b")
  fi
  rc=$?
  set -e
  kill "${ticker}" 2>/dev/null || true
  wait "${ticker}" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    rm -f "${tmp}"
    echo "build-k8s: $b failed (exit $rc)" >&2
    exit $rc
  fi
  mv "${tmp}" "${bin}/$b"
  echo "build-k8s: [$i/${#missing[@]}] $b done in $(( $(date +%s) - start ))s" >&2
done
echo "build-k8s: built ${missing[*]} in $(( $(date +%s) - start_all ))s" >&2
echo "${bin}"
