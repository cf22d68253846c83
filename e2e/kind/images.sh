#!/usr/bin/env bash
# images.sh builds, as docker-archive tarballs, every container image the
# kind cluster runs, from binaries compiled on this machine: nothing can be
# pulled from a registry. e2e/kind/ociimage assembles each image.
#
#   e2e/kind/images.sh [group ...]   # default: control-plane doorman test
#
# Groups and what they write to ${DOORMAN_CACHE:-~/.cache/doorman}/kind/images:
#
#   control-plane  the images `kubeadm config images list` names for
#                  v1.36.3, with kubeadm's names and tags:
#                  kube-apiserver, kube-controller-manager, kube-scheduler,
#                  kube-proxy, etcd (e2e/hack/build-k8s.sh), coredns
#                  (e2e/corednsbuild), pause (kubeadm's pause.c, gcc -static)
#   doorman        doorman-controlplane.tar, doorman-nodeagent.tar
#                  (doorman.local/{controlplane,nodeagent}:e2e, same
#                  entrypoints as deploy/docker/*.Dockerfile)
#   test           test-echo.tar (doorman.local/echo:e2e, the suite's Pods)
#   agnhost        test-agnhost.tar (registry.k8s.io/e2e-test-images/agnhost;
#                  not in the default set: upstream's tests use it)
#
# Versions come from kubeadm's constants in the module cache (CoreDNSVersion,
# SupportedEtcdVersion, PauseVersion); the script fails when a pinned module
# (e2e/etcdbuild, e2e/corednsbuild) disagrees with them rather than shipping
# a binary under another version's tag.
#
# An image whose inputs (binaries, flags, ociimage's source) are unchanged
# is not rebuilt: <file>.tar.inputs beside each tarball records them. Built
# binaries are kept in the cache's kind/bin, named by a hash of their
# sources, so CoreDNS, agnhost and pause compile once. Prints the images
# directory on its last line.
set -euo pipefail
shopt -s inherit_errexit

K8S_VERSION=v1.36.3
REGISTRY=registry.k8s.io

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
kdir="${cache}/kind"
out="${kdir}/images"
bindir="${kdir}/bin"
mkdir -p "${out}" "${bindir}"

say() { echo "images: $*" >&2; }
die() { say "$*"; exit 1; }
# hash12 FILE...: a short name for the files' contents (not their paths).
hash12() { cat "$@" | sha256sum | cut -c1-12; }

groups=("$@")
if [ ${#groups[@]} -eq 0 ]; then groups=(control-plane doorman test); fi
for g in "${groups[@]}"; do
  case "$g" in
    control-plane|doorman|test|agnhost) ;;
    *) echo "images: unknown group $g (want control-plane, doorman, test or agnhost)" >&2; exit 2 ;;
  esac
done
want() { case " ${groups[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

t_all=$(date +%s)
summary=()

# --- the image tool --------------------------------------------------------

ociimage="${bindir}/ociimage"
(cd "${repo}" && CGO_ENABLED=0 go build -trimpath -o "${ociimage}.tmp.$$" ./e2e/kind/ociimage)
mv "${ociimage}.tmp.$$" "${ociimage}"
# What makes ociimage write different bytes: its source and the library
# version. Not its binary, which changes with the Go toolchain alone.
tool_hash="$(
  cd "${repo}"
  { find e2e/kind/ociimage -name '*.go' ! -name '*_test.go' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    grep 'github.com/google/go-containerregistry ' go.mod; } | sha256sum | cut -c1-12
)"

# image FILE REF OCIIMAGE-ARGS... writes ${out}/FILE unless its recorded
# inputs match: the reference, the flags, the tool, and the content hash of
# every file the flags name.
image() {
  local file="$1" ref="$2"; shift 2
  local target="${out}/${file}" t inputs src
  t=$(date +%s)
  inputs="$(
    echo "ref ${ref}"
    echo "ociimage ${tool_hash}"
    printf 'arg %s\n' "$@"
    local prev=
    for a in "$@"; do
      case "${prev}" in
        -file) src="${a%%:*}"; echo "sha256 $(sha256sum <"${src}" | cut -d' ' -f1) ${src}" ;;
        -rootfs) echo "sha256 $(sha256sum <"${a}" | cut -d' ' -f1) ${a}" ;;
      esac
      prev="${a}"
    done
  )"
  local how
  if [ -s "${target}" ] && [ -f "${target}.inputs" ] && [ "$(cat "${target}.inputs")" = "${inputs}" ]; then
    how="unchanged"
  else
    rm -f "${target}.inputs"
    "${ociimage}" -name "${ref}" -o "${target}" "$@"
    printf '%s\n' "${inputs}" >"${target}.inputs"
    how="built"
  fi
  local line
  line="$(printf '%-28s %-52s %7s  %s in %ss' "${file}" "${ref}" \
    "$(numfmt --to=iec --suffix=B "$(stat -c %s "${target}")")" "${how}" "$(( $(date +%s) - t ))")"
  say "${line}"
  summary+=("${line}")
}

# Directories every image gets: programs expect a writable /tmp.
common=(-dir /tmp:1777)

# --- versions kubeadm expects ---------------------------------------------

k8s_dir="$(bash "${repo}/e2e/hack/k8s-source.sh")" || die "no k8s.io/kubernetes source (see above)"
constants="${k8s_dir}/cmd/kubeadm/app/constants/constants.go"
constant() {
  local v
  v="$(sed -n "s/^[[:space:]]*$1 = \"\(.*\)\"\$/\1/p" "${constants}" | head -n 1)"
  [ -n "${v}" ] || die "no $1 in ${constants}"
  echo "${v}"
}
minor="$(echo "${K8S_VERSION}" | cut -d. -f2)"
etcd_tag="$(sed -n "s/^[[:space:]]*${minor}: \"\(.*\)\",\$/\1/p" "${constants}" | head -n 1)"
[ -n "${etcd_tag}" ] || die "no SupportedEtcdVersion for 1.${minor} in ${constants}"
coredns_version="$(constant CoreDNSVersion)"
pause_version="$(constant PauseVersion)"

# Each control-plane image as kubeadm names it. When kubeadm's own list is
# at hand (e2e/kind/node/build.sh writes it), it must agree.
declare -A ref_of=(
  [kube-apiserver]="${REGISTRY}/kube-apiserver:${K8S_VERSION}"
  [kube-controller-manager]="${REGISTRY}/kube-controller-manager:${K8S_VERSION}"
  [kube-scheduler]="${REGISTRY}/kube-scheduler:${K8S_VERSION}"
  [kube-proxy]="${REGISTRY}/kube-proxy:${K8S_VERSION}"
  [etcd]="${REGISTRY}/etcd:${etcd_tag}"
  [coredns]="${REGISTRY}/coredns/coredns:${coredns_version}"
  [pause]="${REGISTRY}/pause:${pause_version}"
)
if [ -f "${kdir}/kubeadm-images.txt" ]; then
  for k in "${!ref_of[@]}"; do
    grep -qxF "${ref_of[$k]}" "${kdir}/kubeadm-images.txt" ||
      die "${ref_of[$k]} (${k}) is not in ${kdir}/kubeadm-images.txt, which kubeadm wrote: the constants and kubeadm disagree"
  done
fi

# --- control-plane ---------------------------------------------------------

if want control-plane; then
  etcd_pinned="$(awk '$1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3} $1 == "go.etcd.io/etcd/server/v3" {print $2}' "${repo}/e2e/etcdbuild/go.mod" | head -n 1)"
  [ "${etcd_pinned#v}" = "${etcd_tag%-*}" ] ||
    die "e2e/etcdbuild pins etcd ${etcd_pinned} but kubeadm ${K8S_VERSION} runs ${REGISTRY}/etcd:${etcd_tag}"
  coredns_pinned="$(awk '$1 == "require" && $2 == "github.com/coredns/coredns" {print $3} $1 == "github.com/coredns/coredns" {print $2}' "${repo}/e2e/corednsbuild/go.mod" | head -n 1)"
  [ "${coredns_pinned}" = "${coredns_version}" ] ||
    die "e2e/corednsbuild pins CoreDNS ${coredns_pinned} but kubeadm ${K8S_VERSION} deploys ${coredns_version}"

  k8s_bin="$(bash "${repo}/e2e/hack/build-k8s.sh" kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd | tail -n 1)"

  coredns="${bindir}/coredns-$(hash12 "${repo}"/e2e/corednsbuild/{go.mod,go.sum,main.go})"
  if [ ! -x "${coredns}" ]; then
    t=$(date +%s)
    say "building CoreDNS ${coredns_version} (a few minutes on 2 cores)"
    (cd "${repo}/e2e/corednsbuild" && CGO_ENABLED=0 GOFLAGS=-mod=readonly \
      go build -trimpath -ldflags "-s -w" -o "${coredns}.tmp" .)
    mv "${coredns}.tmp" "${coredns}"
    say "built CoreDNS in $(( $(date +%s) - t ))s"
  fi

  # pause.c as kubeadm's release builds it (build/pause/Makefile: -Os
  # -static, VERSION=v<tag>-<git rev>; no git here, so the tag alone).
  pause_src="${k8s_dir}/build/pause/linux/pause.c"
  [ -f "${pause_src}" ] || die "no ${pause_src}"
  pause="${bindir}/pause-$(echo "${pause_version}" | cat - "${pause_src}" | sha256sum | cut -c1-12)"
  if [ ! -x "${pause}" ]; then
    command -v gcc >/dev/null || die "pause needs gcc (and libc6-dev for a static libc)"
    gcc -Os -Wall -Werror -static -DVERSION="v${pause_version}" -o "${pause}.tmp" "${pause_src}"
    strip "${pause}.tmp"
    mv "${pause}.tmp" "${pause}"
  fi

  # kubeadm's static Pods run each component by command name, found
  # through the image's PATH (ociimage sets one).
  for c in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd; do
    image "${c}.tar" "${ref_of[$c]}" "${common[@]}" \
      -file "${k8s_bin}/${c}:/usr/local/bin/${c}:0755" -entrypoint "/usr/local/bin/${c}"
  done
  # Root, unlike upstream's image (non-root with a file capability on the
  # binary): kubeadm's Deployment drops every capability but adds
  # NET_BIND_SERVICE, which only a root process keeps effective without
  # file capabilities.
  image coredns.tar "${ref_of[coredns]}" "${common[@]}" \
    -file "${coredns}:/coredns:0755" -entrypoint /coredns
  image pause.tar "${ref_of[pause]}" \
    -file "${pause}:/pause:0755" -entrypoint /pause -user 65535:65535
fi

# --- doorman ---------------------------------------------------------------

if want doorman; then
  # Built as deploy/docker/*.Dockerfile build them; go's build cache makes
  # an unchanged tree cheap, and an unchanged binary skips the image.
  t=$(date +%s)
  for b in controlplane nodeagent; do
    (cd "${repo}" && CGO_ENABLED=0 go build -trimpath -buildvcs=true -ldflags "-s -w" -o "${bindir}/${b}.tmp" "./${b}")
    mv "${bindir}/${b}.tmp" "${bindir}/${b}"
  done
  say "go build ./controlplane ./nodeagent: $(( $(date +%s) - t ))s"
  # The same paths and users as the Dockerfiles, so deploy/ runs either.
  image doorman-controlplane.tar doorman.local/controlplane:e2e "${common[@]}" \
    -file "${bindir}/controlplane:/controlplane:0755" -entrypoint /controlplane -user 65532:65532
  image doorman-nodeagent.tar doorman.local/nodeagent:e2e "${common[@]}" \
    -file "${bindir}/nodeagent:/nodeagent:0755" -entrypoint /nodeagent
fi

# --- test ------------------------------------------------------------------

if want test; then
  # doorman's echo server with its control endpoint: the e2e suite's Pods
  # on kind (e2e/provider.EchoImage).
  t=$(date +%s)
  (cd "${repo}" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${bindir}/echo.tmp" ./e2e/echo/cmd/echo)
  mv "${bindir}/echo.tmp" "${bindir}/echo"
  say "go build ./e2e/echo/cmd/echo: $(( $(date +%s) - t ))s"
  image test-echo.tar doorman.local/echo:e2e "${common[@]}" \
    -file "${bindir}/echo:/echo:0755" -entrypoint /echo
fi

# --- agnhost ---------------------------------------------------------------

if want agnhost; then
  agnhost_version="$(tr -d '[:space:]' <"${k8s_dir}/test/images/agnhost/VERSION")"
  k8sbuild="${repo}/e2e/k8sbuild"
  agnhost="${bindir}/agnhost-$(hash12 "${k8sbuild}/go.mod" "${k8sbuild}/go.sum")"
  if [ ! -x "${agnhost}" ]; then
    t=$(date +%s)
    say "building agnhost ${agnhost_version} (several minutes on 2 cores)"
    # agnhost's own dependencies (e.g. github.com/ishidawataru/sctp) may
    # lack go.sum lines in e2e/k8sbuild: build against a copy of its
    # go.mod that may gain them, and refuse if any version moved.
    mod="$(mktemp -d "${bindir}/.agnhost-mod.XXXXXX")"
    cp "${k8sbuild}/go.mod" "${k8sbuild}/go.sum" "${mod}/"
    (cd "${k8sbuild}" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -modfile="${mod}/go.mod" -trimpath \
      -ldflags "-s -w" -o "${agnhost}.tmp" k8s.io/kubernetes/test/images/agnhost)
    cmp -s "${k8sbuild}/go.mod" "${mod}/go.mod" || {
      diff "${k8sbuild}/go.mod" "${mod}/go.mod" >&2 || true
      rm -rf "${mod}" "${agnhost}.tmp"
      die "building agnhost changed e2e/k8sbuild's module versions (above): pin them there"
    }
    rm -rf "${mod}"
    mv "${agnhost}.tmp" "${agnhost}"
    say "built agnhost in $(( $(date +%s) - t ))s"
  fi
  # As agnhost's Dockerfile: the binary at /agnhost, /agnhost-2 a link to
  # it (entrypoint tests), /uploads for netexec, default command pause.
  image test-agnhost.tar "${REGISTRY}/e2e-test-images/agnhost:${agnhost_version}" "${common[@]}" \
    -file "${agnhost}:/agnhost:0755" -symlink /agnhost-2:agnhost -dir /uploads \
    -entrypoint /agnhost -cmd pause
fi

say "done in $(( $(date +%s) - t_all ))s:"
for l in "${summary[@]}"; do echo "  ${l}" >&2; done
echo "${out}"
