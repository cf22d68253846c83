#!/usr/bin/env bash
# kind-binary.sh installs the kind CLI doorman's clusters are made with,
# from source through the Go module proxy, into the cache, once:
#
#   ${DOORMAN_CACHE:-$HOME/.cache/doorman}/bin/kind-v0.33.0
#
# Prints the binary's path on its last line.
set -euo pipefail

KIND_VERSION=v0.33.0
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
mkdir -p "${cache}/bin"
kind_bin="${cache}/bin/kind-${KIND_VERSION}"
if [ ! -x "${kind_bin}" ]; then
  tmp="$(mktemp -d "${cache}/bin/.kind.XXXXXX")"
  (cd "${tmp}" && GOBIN="${tmp}" GOFLAGS=-mod=mod go install "sigs.k8s.io/kind@${KIND_VERSION}")
  mv "${tmp}/kind" "${kind_bin}"
  rm -rf "${tmp}"
fi
echo "${kind_bin}"
