#!/usr/bin/env bash
# Installs what doorman's tests need on a fresh Debian machine: the few
# Debian packages (when missing) and the Go modules. Idempotent and quiet
# when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v make >/dev/null 2>&1 || need+=(make)
command -v git >/dev/null 2>&1 || need+=(git)
# kube-proxy, the benchmark's baseline, runs nft and iptables.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
# make e2e-kind: a Docker engine started by hand, a Debian rootfs for kind's
# node image, gcc for the pause image's static binary.
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

go mod download
(cd tools && go mod download)
