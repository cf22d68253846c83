#!/usr/bin/env bash
# rootfs.sh makes the Debian bookworm root filesystem a kind node boots:
# systemd as PID 1, Debian's containerd and runc, the CNI plugins and the
# tools kubelet, kubeadm and kind's entrypoint call. It stands in for the
# base stage of kind's own node image, which needs a registry to build.
#
#   e2e/kind/node/rootfs.sh        # prints the tarball's path on its last line
#
# debootstrap runs once per package list: the result is kept as
# ${DOORMAN_CACHE:-$HOME/.cache/doorman}/kind/rootfs/bookworm-<hash>.tar
# (numeric owners, extended attributes kept) and reused afterwards.
#
# Bookworm, not trixie: systemd 256 and later refuse to boot on a cgroup v1
# host, and the machines this runs on may still be cgroup v1.
set -euo pipefail

suite=bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# Beyond minbase: PID 1 and its bus; the container runtime; what kubelet and
# kubeadm exec (iptables for their canary chains, conntrack, ethtool, socat
# for port-forward, mount/util-linux/kmod); what kind's entrypoint and its
# scripts use (jq, findmnt, iptables alternatives); and a few tools to debug
# a node from `docker exec`.
packages=(
  systemd systemd-sysv dbus
  containerd runc containernetworking-plugins libseccomp2
  iptables nftables iproute2 conntrack ethtool socat
  mount util-linux kmod procps e2fsprogs
  bash ca-certificates curl jq pigz
  iputils-ping netcat-openbsd
)

cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
dir="${cache}/kind/rootfs"
key="$(printf '%s\n' "${suite}" "${mirror}" "${packages[@]}" | sha256sum | cut -c1-12)"
out="${dir}/${suite}-${key}.tar"

if [ -s "${out}" ]; then
  echo "rootfs: cached ${out}" >&2
  echo "${out}"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "rootfs: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "${dir}"
work="$(mktemp -d "${dir}/.work.XXXXXX")"
cleanup() {
  # A failed debootstrap can leave /proc and /sys mounted inside the target.
  for m in proc sys dev/pts dev; do
    if mountpoint -q "${work}/root/$m" 2>/dev/null; then umount -l "${work}/root/$m" || true; fi
  done
  rm -rf "${work}"
}
trap cleanup EXIT

start=$(date +%s)
include="$(IFS=,; echo "${packages[*]}")"
echo "rootfs: debootstrap ${suite} (minbase + ${#packages[@]} packages) from ${mirror}, log ${work}/debootstrap.log" >&2
if ! debootstrap --variant=minbase --include="${include}" "${suite}" "${work}/root" "${mirror}" >"${work}/debootstrap.log" 2>&1; then
  tail -n 30 "${work}/debootstrap.log" >&2
  if [ -f "${work}/root/debootstrap/debootstrap.log" ]; then tail -n 30 "${work}/root/debootstrap/debootstrap.log" >&2; fi
  echo "rootfs: debootstrap ${suite} failed" >&2
  exit 1
fi
# Package caches and lists only make the image larger.
rm -rf "${work}/root/var/cache/apt/archives/"*.deb "${work}/root/var/lib/apt/lists/"*
tar --numeric-owner --xattrs --xattrs-include='*' -C "${work}/root" -cf "${work}/rootfs.tar" .
mv "${work}/rootfs.tar" "${out}"
echo "rootfs: ${out} in $(( $(date +%s) - start ))s" >&2
echo "${out}"
