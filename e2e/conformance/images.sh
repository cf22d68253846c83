#!/usr/bin/env bash
# images.sh builds, as docker-archive tarballs, the images the selected
# upstream sig-network tests start, under exactly the names e2e.test asks
# for (k8s.io/kubernetes/test/utils/image/manifest.go at v1.36.3). Nothing
# can be pulled here, so each is rebuilt from Debian packages and
# binaries compiled from the pinned sources; README.md says what each
# stands for. Tarballs go to
#
#   ${DOORMAN_CACHE:-~/.cache/doorman}/kind/images/conformance-*.tar
#
# for `kind load image-archive`. e2e/kind/ociimage assembles them; each
# Debian root filesystem is made once by debootstrap and kept in
# ${DOORMAN_CACHE}/kind/rootfs/conformance-<name>-<hash>.tar. An image
# whose inputs are unchanged is not rebuilt (<file>.tar.inputs).
#
# pause (registry.k8s.io/pause:3.10.2) is the cluster's own sandbox image,
# built by e2e/kind/images.sh control-plane and already in the node image.
# ${DOORMAN_CACHE}/kind/conformance/kube-proxy-nftables.tar
# (registry.k8s.io/kube-proxy:v1.36.3 with nft and iptables beside it) is
# for the kube-proxy cluster only.
#
# Prints the images directory on its last line.
set -euo pipefail
shopt -s inherit_errexit

K8S_VERSION=v1.36.3
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
E2E_REGISTRY=registry.k8s.io/e2e-test-images
BUILD_REGISTRY=registry.k8s.io/build-image

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
kdir="${cache}/kind"
out="${kdir}/images"
bindir="${kdir}/bin"
rootfs_dir="${kdir}/rootfs"
mkdir -p "${out}" "${bindir}" "${rootfs_dir}" "${kdir}/conformance"

say() { echo "conformance-images: $*" >&2; }
die() { say "$*"; exit 1; }
hash12() { cat "$@" | sha256sum | cut -c1-12; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot)"
t_all=$(date +%s)
summary=()

k8s_dir="$(bash "${repo}/e2e/hack/k8s-source.sh")" || die "no k8s.io/kubernetes source (see above)"
manifest="${k8s_dir}/test/utils/image/manifest.go"
[ -f "${manifest}" ] || die "no ${manifest} in the k8s.io/kubernetes module"

# tag NAME: the version manifest.go gives the image NAME, so a new
# Kubernetes pin cannot silently keep loading the old tags.
tag() {
  local v
  v="$(sed -n "s/^[[:space:]]*configs\[$2\] = Config{list\.[A-Za-z0-9]*, \"$1\", \"\(.*\)\"}\$/\1/p" "${manifest}")"
  [ -n "${v}" ] || die "no configs[$2] for image $1 in ${manifest}"
  echo "${v}"
}

# The tags e2e.test asks for; a failure here stops the script (an
# assignment, not an argument, carries the exit status).
agnhost_tag="$(tag agnhost Agnhost)"
dns_tag="$(tag glibc-dns-testing GlibcDnsTesting)"
iptables_tag="$(tag distroless-iptables DistrolessIptables)"
nginx_tag="$(tag nginx Nginx)"
busybox_tag="$(tag busybox BusyBox)"
regression_tag="$(tag regression-issue-74839 RegressionIssue74839)"

# --- root filesystems ------------------------------------------------------

# rootfs NAME SUITE SETUP PACKAGE...: a Debian SUITE minbase root with the
# packages, after the shell snippet SETUP ran in it (chroot), as a
# tarball. Prints its path. Cached by name, suite, packages and SETUP.
rootfs() {
  local name="$1" suite="$2" setup="$3"; shift 3
  local key target work start
  key="$(printf '%s\n' "${suite}" "${MIRROR}" "${setup}" "$@" | sha256sum | cut -c1-12)"
  target="${rootfs_dir}/conformance-${name}-${key}.tar"
  if [ -s "${target}" ]; then echo "${target}"; return; fi
  command -v debootstrap >/dev/null || die "needs debootstrap (apt-get install debootstrap)"
  work="$(mktemp -d "${rootfs_dir}/.work-${name}.XXXXXX")"
  start=$(date +%s)
  say "debootstrap ${suite} minbase + $* for ${name}, log ${work}/debootstrap.log"
  if ! debootstrap --variant=minbase --include="$(IFS=,; echo "$*")" "${suite}" "${work}/root" "${MIRROR}" \
      >"${work}/debootstrap.log" 2>&1; then
    tail -n 30 "${work}/debootstrap.log" >&2
    for m in proc sys dev/pts dev; do
      if mountpoint -q "${work}/root/$m" 2>/dev/null; then umount -l "${work}/root/$m" || true; fi
    done
    rm -rf "${work}"
    die "debootstrap for ${name} failed"
  fi
  if [ -n "${setup}" ]; then chroot "${work}/root" /bin/sh -euc "${setup}" >&2; fi
  # Package caches and lists only make the image larger.
  rm -rf "${work}/root/var/cache/apt/archives/"*.deb "${work}/root/var/lib/apt/lists/"*
  tar --numeric-owner --xattrs --xattrs-include='*' -C "${work}/root" -cf "${work}/rootfs.tar" .
  mv "${work}/rootfs.tar" "${target}"
  rm -rf "${work}"
  # Roots of this name built from other package lists are stale now.
  find "${rootfs_dir}" -maxdepth 1 -name "conformance-${name}-*.tar" ! -path "${target}" -delete
  say "rootfs ${name}: $(numfmt --to=iec --suffix=B "$(stat -c %s "${target}")") in $(( $(date +%s) - start ))s"
  echo "${target}"
}

# The roots first: debootstrap waits on the network, the compiles below on
# the CPU.
# agnhost's root is trixie, not bookworm: "Networking IPerf2 should run
# iperf2" parses iperf's enhanced CSV report, which has the 17 fields it
# wants from iperf 2.2 on; bookworm ships 2.1.8 (9 fields), upstream's
# alpine base a 2.2.
agnhost_root="$(rootfs agnhost trixie '
  ln -s /usr/bin/iperf /usr/local/bin/iperf
  groupadd -g 50000 group-defined-in-image
  useradd -m -u 1000 -G group-defined-in-image user-defined-in-image
' bash curl wget ca-certificates netcat-openbsd iproute2 bind9-dnsutils iperf util-linux procps)"
dns_root="$(rootfs glibc-dns-testing bookworm '' dnsutils)"
iptables_root="$(rootfs distroless-iptables bookworm '' iptables nftables conntrack)"
nginx_root="$(rootfs nginx bookworm '
  sed -i "/listen \[::\]:80/d" /etc/nginx/sites-available/default
  ln -sf /dev/stdout /var/log/nginx/access.log
  ln -sf /dev/stderr /var/log/nginx/error.log
' nginx-light)"

# --- binaries --------------------------------------------------------------

ociimage="${bindir}/ociimage"
(cd "${repo}" && CGO_ENABLED=0 go build -trimpath -o "${ociimage}.tmp.$$" ./e2e/kind/ociimage)
mv "${ociimage}.tmp.$$" "${ociimage}"
tool_hash="$(
  cd "${repo}"
  { find e2e/kind/ociimage -name '*.go' ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    grep 'github.com/google/go-containerregistry ' go.mod; } | sha256sum | cut -c1-12
)"

# agnhost, compiled once for this script and e2e/kind/images.sh (same name).
bash "${repo}/e2e/conformance/build.sh" agnhost regression-issue-74839 >/dev/null
modhash="$(hash12 "${repo}/e2e/k8sbuild/go.mod" "${repo}/e2e/k8sbuild/go.sum")"
agnhost="${bindir}/agnhost-${modhash}"
regression="${bindir}/regression-issue-74839-${modhash}"
[ -x "${agnhost}" ] || die "build.sh did not leave ${agnhost}"
[ -x "${regression}" ] || die "build.sh did not leave ${regression}"

# CoreDNS: agnhost's and glibc-dns-testing's images carry a /coredns that
# the DNS tests start with their own Corefile. Upstream bundles release
# 1.6.2 and 1.5.0; the CoreDNS kubeadm v1.36.3 deploys (e2e/corednsbuild)
# reads those Corefiles too. Same name and build as e2e/kind/images.sh.
coredns="${bindir}/coredns-$(hash12 "${repo}"/e2e/corednsbuild/{go.mod,go.sum,main.go})"
if [ ! -x "${coredns}" ]; then
  t=$(date +%s)
  say "building CoreDNS (a few minutes on 2 cores)"
  (cd "${repo}/e2e/corednsbuild" && CGO_ENABLED=0 GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags "-s -w" -o "${coredns}.tmp" .)
  mv "${coredns}.tmp" "${coredns}"
  say "built CoreDNS in $(( $(date +%s) - t ))s"
fi

# --- images ----------------------------------------------------------------

# image FILE REF OCIIMAGE-ARGS...: as e2e/kind/images.sh, rebuilt only when
# the reference, the flags, the tool or a named file's content changed.
image() {
  local file="$1" ref="$2"; shift 2
  local target="${out}/${file}" t inputs how line
  t=$(date +%s)
  inputs="$(
    echo "ref ${ref}"
    echo "ociimage ${tool_hash}"
    printf 'arg %s\n' "$@"
    prev=
    for a in "$@"; do
      case "${prev}" in
        -file) echo "sha256 $(sha256sum <"${a%%:*}" | cut -d' ' -f1) ${a%%:*}" ;;
        -rootfs) echo "sha256 $(sha256sum <"${a}" | cut -d' ' -f1) ${a}" ;;
      esac
      prev="${a}"
    done
  )"
  if [ -s "${target}" ] && [ -f "${target}.inputs" ] && [ "$(cat "${target}.inputs")" = "${inputs}" ]; then
    how=unchanged
  else
    rm -f "${target}.inputs"
    "${ociimage}" -name "${ref}" -o "${target}" "$@"
    printf '%s\n' "${inputs}" >"${target}.inputs"
    how=built
  fi
  line="$(printf '%-36s %-58s %7s  %s in %ss' "${file}" "${ref}" \
    "$(numfmt --to=iec --suffix=B "$(stat -c %s "${target}")")" "${how}" "$(( $(date +%s) - t ))")"
  say "${line}"
  summary+=("${line}")
}

common=(-dir /tmp:1777)

# agnhost: agnhost's Dockerfile on alpine adds bind-tools, curl,
# netcat-openbsd, iproute2, iperf, bash and util-linux-misc; links iperf
# into /usr/local/bin; adds the user and group node tests look for. The
# tests exec these tools inside agnhost Pods (curl, nc, dig, ip), and
# wget, which alpine's busybox provides (the Services tests that count
# the hostnames behind a Service).
porter="${k8s_dir}/test/images/agnhost/porter"
# Same paths as the Dockerfile: /agnhost, /agnhost-2 a link to it, /uploads
# for netexec, porter's certificate in /, /coredns; default command pause.
image conformance-agnhost.tar "${E2E_REGISTRY}/agnhost:${agnhost_tag}" "${common[@]}" \
  -rootfs "${agnhost_root}" \
  -file "${agnhost}:/agnhost:0755" -symlink /agnhost-2:agnhost -dir /uploads \
  -file "${coredns}:/coredns:0755" \
  -file "${porter}/localhost.crt:/localhost.crt:0644" -file "${porter}/localhost.key:/localhost.key:0644" \
  -entrypoint /agnhost -cmd pause

# glibc-dns-testing: upstream is debian:bookworm-slim plus dnsutils and a
# /coredns; the DNS tests run dig and getent (glibc's resolver) in it.
image conformance-glibc-dns-testing.tar "${E2E_REGISTRY}/glibc-dns-testing:${dns_tag}" "${common[@]}" \
  -rootfs "${dns_root}" -file "${coredns}:/coredns:0755" -cmd /bin/bash

# regression-issue-74839: upstream is debian-base (bookworm) plus the
# server of "Conntrack ... should not be vulnerable to the invalid
# conntrack state bug", which answers with an out-of-window TCP packet.
# Here the glibc-dns-testing root (bookworm minbase + dnsutils; one layer
# for both on the nodes) and the binary built from the pinned source.
image conformance-regression-issue-74839.tar "${E2E_REGISTRY}/regression-issue-74839:${regression_tag}" "${common[@]}" \
  -rootfs "${dns_root}" -file "${regression}:/regression-issue-74839:0755" -entrypoint /regression-issue-74839

# distroless-iptables: upstream is a distroless root with iptables,
# nftables and conntrack; "KubeProxy should set TCP CLOSE_WAIT timeout" runs
# it host-networked and reads the node's conntrack table with sh, cat,
# grep and conntrack.
image conformance-distroless-iptables.tar "${BUILD_REGISTRY}/distroless-iptables:${iptables_tag}" "${common[@]}" \
  -rootfs "${iptables_root}" -cmd /bin/sh

# nginx: upstream nginx:1.15 on alpine serving its default page on port 80
# (IPv4; its IPv6 listener is added only where the Pod has IPv6), logs to
# the container's output. The EndpointSlice and Endpoints tests run it as a
# plain long-lived server. Debian's nginx-light, its default site on IPv4
# port 80, and the same entrypoint.
image conformance-nginx.tar "${E2E_REGISTRY}/nginx:${nginx_tag}" "${common[@]}" \
  -rootfs "${nginx_root}" -entrypoint nginx -cmd -g -cmd 'daemon off;'

# busybox: upstream is the busybox image (one static binary and its
# applets). Debian's busybox-static, its applets as links, and the
# passwd/group files the busybox image ships.
bb_version="$(apt-cache policy busybox-static | sed -n 's/^ *Candidate: //p')"
[ -n "${bb_version}" ] && [ "${bb_version}" != "(none)" ] || die "apt knows no busybox-static (apt-get update)"
bb_dir="${bindir}/busybox-$(echo "${bb_version}" | sha256sum | cut -c1-12)"
if [ ! -x "${bb_dir}/bin/busybox" ]; then
  tmp="$(mktemp -d)"
  # As root, not apt's sandbox user, who cannot write the temporary directory.
  (cd "${tmp}" && apt-get -o APT::Sandbox::User=root download "busybox-static=${bb_version}" >&2)
  mkdir -p "${bb_dir}.tmp"
  dpkg-deb -x "${tmp}"/busybox-static_*.deb "${bb_dir}.tmp"
  rm -rf "${tmp}"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"${bb_dir}.tmp/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"${bb_dir}.tmp/group"
  rm -rf "${bb_dir}"
  mv "${bb_dir}.tmp" "${bb_dir}"
fi
bb_links=()
while read -r applet; do
  [ "${applet}" = bin/busybox ] && continue
  bb_links+=(-symlink "/${applet}:/bin/busybox")
done < <("${bb_dir}/bin/busybox" --list-full | LC_ALL=C sort)
[ ${#bb_links[@]} -gt 100 ] || die "busybox ${bb_version} lists only ${#bb_links[@]} applets"
image conformance-busybox.tar "${E2E_REGISTRY}/busybox:${busybox_tag}" "${common[@]}" \
  -file "${bb_dir}/bin/busybox:/bin/busybox:0755" \
  -file "${bb_dir}/passwd:/etc/passwd:0644" -file "${bb_dir}/group:/etc/group:0644" \
  "${bb_links[@]}" -cmd sh

# kube-proxy for the comparison cluster. Upstream's kube-proxy image is
# built on distroless-iptables: in nftables mode kube-proxy programs the
# kernel by running nft (sigs.k8s.io/knftables), and it calls iptables to
# clear the other modes' rules at start-up. e2e/kind/images.sh's
# kube-proxy.tar (the node image's preload) holds the binary alone, enough
# for kubeadm's image list but not to run; run.sh loads this one over it
# in the kube-proxy cluster only. Same binary, name and entrypoint.
# It lives apart from ${out}: e2e/kind/node/build.sh takes kubeadm's
# images from any tarball there, and must keep preloading its own.
k8s_bin="$(bash "${repo}/e2e/hack/build-k8s.sh" kube-proxy | tail -n 1)"
image ../conformance/kube-proxy-nftables.tar "registry.k8s.io/kube-proxy:${K8S_VERSION}" "${common[@]}" \
  -rootfs "${iptables_root}" \
  -file "${k8s_bin}/kube-proxy:/usr/local/bin/kube-proxy:0755" -entrypoint /usr/local/bin/kube-proxy

say "done in $(( $(date +%s) - t_all ))s:"
for l in "${summary[@]}"; do echo "  ${l}" >&2; done
echo "${out}"
