#!/usr/bin/env bash
# Prints the directory of the pinned k8s.io/kubernetes source (e2e/k8sbuild)
# in the Go module cache, downloading the module first when the cache lacks
# it: the binaries built from it may be cached in ~/.cache/doorman while
# the module cache was emptied (go clean -modcache, another $HOME).
set -euo pipefail
build="$(cd "$(dirname "$0")/../k8sbuild" && pwd)"
dir() { (cd "${build}" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes); }
d="$(dir)"
if [ ! -d "${d}" ]; then
  echo "k8s-source: k8s.io/kubernetes not in the module cache: downloading it" >&2
  (cd "${build}" && GOFLAGS=-mod=readonly go mod download k8s.io/kubernetes)
  d="$(dir)"
fi
[ -d "${d}" ] || { echo "k8s-source: k8s.io/kubernetes not in the module cache after go mod download" >&2; exit 1; }
echo "${d}"
