#!/usr/bin/env bash
# build.sh assembles the kind node image doorman's kind cluster runs,
# entirely from things built or fetched on this machine: kindest/node
# cannot be pulled and `kind build node-image` needs a registry.
#
#   e2e/kind/node/build.sh     # prints the image name on its last line,
#                              # e.g. doorman.local/kind-node:v1.36.3-0123abcd4567
#   e2e/kind/node/build.sh --inputs
#                              # only builds and caches the inputs below
#                              # (no Docker engine needed); prints nothing
#
# The image holds:
#   - a Debian bookworm root filesystem (rootfs.sh, debootstrap, cached);
#   - kind v0.33.0's node files (entrypoint, systemd units for containerd
#     and kubelet, kubeadm drop-in, /kind/bin scripts), read from the Go
#     module cache at build time;
#   - files/containerd-config.toml and files/default-storage.yaml;
#   - kubelet, kubeadm, kubectl v1.36.3 built from source
#     (e2e/hack/build-k8s.sh), and crictl, which `kind load` calls;
#   - /kind/version, which kind reads to pick its kubeadm config;
#   - the images `kubeadm config images list` names for v1.36.3, imported
#     into containerd's k8s.io namespace from the docker-archive tarballs in
#     $KIND_IMAGES_DIR, so that kubeadm never pulls.
#
# The tag is a hash of every input (these scripts and files, kind's files,
# the binaries, the image tarballs used). An unchanged tag is reused from
# the engine, or loaded from the archive kept at
# $DOORMAN_CACHE/kind/node-v1.36.3-<hash>.tar when the engine lost it;
# only a changed input assembles the image again. The list kubeadm wants is
# written to $DOORMAN_CACHE/kind/kubeadm-images.txt.
#
# Environment:
#   DOORMAN_CACHE    cache dir (default ~/.cache/doorman)
#   KIND_IMAGES_DIR  where the image tarballs are (default $DOORMAN_CACHE/kind/images)
#
# Needs root (the root filesystem keeps its owners), a Docker engine
# (e2e/kind/docker.sh start), Go, jq and containerd/ctr on the host: the
# host's containerd writes the preloaded images into the image's
# /var/lib/containerd without running a container.
set -euo pipefail

K8S_VERSION=v1.36.3
KIND_VERSION=v0.33.0
CRICTL_VERSION=v1.36.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../../.." && pwd)"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
kdir="${cache}/kind"
images_dir="${KIND_IMAGES_DIR:-${kdir}/images}"
mkdir -p "${kdir}/bin"

say() { echo "node-image: $*" >&2; }
elapsed() { echo "$(( $(date +%s) - $1 ))s"; }
t_all=$(date +%s)

inputs_only=0
case "${1:-}" in
  --inputs) inputs_only=1 ;;
  "") ;;
  *) say "unknown argument $1 (want --inputs or nothing)"; exit 2 ;;
esac

tools=(jq go sha256sum)
if [ "${inputs_only}" = 0 ]; then tools+=(docker containerd ctr); fi
for tool in "${tools[@]}"; do
  command -v "${tool}" >/dev/null || { say "needs ${tool}"; exit 1; }
done
if [ "${inputs_only}" = 0 ]; then
  docker info >/dev/null 2>&1 || { say "no Docker engine answers (e2e/kind/docker.sh start)"; exit 1; }
fi

# --- inputs ---------------------------------------------------------------

rootfs="$(bash "${here}/rootfs.sh" | tail -n 1)"
k8sbin="$(bash "${repo}/e2e/hack/build-k8s.sh" kubelet kubeadm kubectl | tail -n 1)"

crictl="${kdir}/bin/crictl-${CRICTL_VERSION}"
if [ ! -x "${crictl}" ]; then
  say "building crictl ${CRICTL_VERSION}"
  gobin="$(mktemp -d "${kdir}/bin/.crictl.XXXXXX")"
  # Outside any module: go install resolves the pinned version by itself.
  (cd /tmp && GOFLAGS= GOBIN="${gobin}" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}")
  mv "${gobin}/crictl" "${crictl}"
  rmdir "${gobin}"
fi

kind_dir="$(cd /tmp && GOFLAGS= go mod download -json "sigs.k8s.io/kind@${KIND_VERSION}" | jq -r .Dir)"
kind_files="${kind_dir}/images/base/files"
[ -f "${kind_files}/usr/local/bin/entrypoint" ] || { say "kind ${KIND_VERSION} node files not found in ${kind_files}"; exit 1; }

"${k8sbin}/kubeadm" config images list --kubernetes-version "${K8S_VERSION}" >"${kdir}/kubeadm-images.txt.tmp"
mv "${kdir}/kubeadm-images.txt.tmp" "${kdir}/kubeadm-images.txt"
if [ "${inputs_only}" = 1 ]; then
  say "inputs ready (root filesystem, kubelet, kubeadm, kubectl, crictl, kind's node files), $(elapsed "${t_all}")"
  exit 0
fi
mapfile -t wanted <"${kdir}/kubeadm-images.txt"
pause_image="$(grep '/pause:' "${kdir}/kubeadm-images.txt")" || { say "kubeadm lists no pause image"; exit 1; }

# Which tarball holds which kubeadm image: read each docker-archive's
# manifest. A missing one is an error, not a skip: a node cannot pull it.
declare -A tarball_of=()
shopt -s nullglob
for t in "${images_dir}"/*.tar; do
  while read -r tag; do
    [ -n "${tag}" ] && tarball_of["${tag}"]="${t}"
  done < <(tar -xOf "${t}" manifest.json 2>/dev/null | jq -r '.[].RepoTags[]?' 2>/dev/null || true)
done
shopt -u nullglob
preload=()
for img in "${wanted[@]}"; do
  t="${tarball_of[${img}]:-}"
  [ -n "${t}" ] || { say "no tarball in ${images_dir} holds ${img}, which kubeadm ${K8S_VERSION} runs (build them with e2e/kind/images.sh)"; exit 1; }
  case " ${preload[*]} " in *" ${t} "*) ;; *) preload+=("${t}") ;; esac
done

hash="$(
  {
    echo "kind ${KIND_VERSION} crictl ${CRICTL_VERSION} k8s ${K8S_VERSION} rootfs $(basename "${rootfs}")"
    (cd "${here}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "${kind_files}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum "${k8sbin}/kubelet" "${k8sbin}/kubeadm" "${k8sbin}/kubectl" "${crictl}" | cut -d' ' -f1
    sha256sum "${preload[@]}" | cut -d' ' -f1
  } | sha256sum | cut -c1-12
)"
image="doorman.local/kind-node:${K8S_VERSION}-${hash}"
archive="${kdir}/node-${K8S_VERSION}-${hash}.tar"

if docker image inspect "${image}" >/dev/null 2>&1; then
  say "up to date (${image}), $(elapsed "${t_all}")"
  echo "${image}"
  exit 0
fi
if [ -s "${archive}" ]; then
  t=$(date +%s)
  docker load -i "${archive}" >&2
  say "loaded ${image} from ${archive} in $(elapsed "${t}")"
  echo "${image}"
  exit 0
fi

# --- assembly -------------------------------------------------------------

work="$(mktemp -d "${kdir}/.node.XXXXXX")"
ctd_pid=
cleanup() {
  if [ -n "${ctd_pid}" ] && kill -0 "${ctd_pid}" 2>/dev/null; then
    kill "${ctd_pid}" 2>/dev/null || true
    wait "${ctd_pid}" 2>/dev/null || true
  fi
  rm -rf "${work}"
}
trap cleanup EXIT
r="${work}/root"
mkdir -p "${r}"

t=$(date +%s)
say "assembling ${image} in ${work}"
tar -C "${r}" --numeric-owner --xattrs --xattrs-include='*' -xpf "${rootfs}"

# kind's node files, with the modes kind's base image gives them: scripts
# 0755, everything else 0644.
install -m 0755 "${kind_files}"/usr/local/bin/* "${r}/usr/local/bin/"
install -d -m 0755 "${r}/kind" "${r}/kind/bin" "${r}/kind/manifests" "${r}/LICENSES" \
  "${r}/etc/containerd" "${r}/etc/kubernetes/manifests" "${r}/etc/systemd/system/kubelet.service.d" "${r}/opt/cni/bin"
install -m 0644 "${kind_files}"/kind/README.txt "${r}/kind/"
install -m 0755 "${kind_files}"/kind/bin/* "${r}/kind/bin/"
install -m 0644 "${kind_files}"/LICENSES/* "${r}/LICENSES/"
install -m 0644 "${kind_files}/etc/crictl.yaml" "${r}/etc/"
install -m 0644 "${kind_files}/etc/default/kubelet" "${r}/etc/default/"
install -m 0644 "${kind_files}"/etc/sysctl.d/* "${r}/etc/sysctl.d/"
# Not containerd-fuse-overlayfs.service: only rootless nodes use it, and
# its snapshotter is not in the image.
for u in containerd.service kubelet.service kubelet.slice undo-mount-hacks.service; do
  install -m 0644 "${kind_files}/etc/systemd/system/${u}" "${r}/etc/systemd/system/"
done
install -m 0644 "${kind_files}"/etc/systemd/system/kubelet.service.d/* "${r}/etc/systemd/system/kubelet.service.d/"

# kind's containerd unit starts /usr/local/bin/containerd; Debian installs
# it in /usr/bin.
ln -sf /usr/bin/containerd "${r}/usr/local/bin/containerd"
# CNI plugins: Debian's in /usr/lib/cni, reachable from the usual place.
for p in "${r}"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "${p}")" "${r}/opt/cni/bin/"; done

sed "s|@PAUSE_IMAGE@|${pause_image}|" "${here}/files/containerd-config.toml" >"${r}/etc/containerd/config.toml"
chmod 0644 "${r}/etc/containerd/config.toml"
# The spec every CRI container starts from: containerd's default, plus
# kind's hook giving each container the node's product_uuid, minus the
# rlimits (containers inherit the node's).
chroot "${r}" /usr/bin/ctr oci spec |
  jq '.hooks.createContainer = ((.hooks.createContainer // []) + [{"path": "/kind/bin/mount-product-files.sh"}]) | del(.process.rlimits)' \
  >"${r}/etc/containerd/cri-base.json"

install -m 0755 "${k8sbin}/kubelet" "${k8sbin}/kubeadm" "${k8sbin}/kubectl" "${r}/usr/bin/"
install -m 0755 "${crictl}" "${r}/usr/local/bin/crictl"
echo "${K8S_VERSION}" >"${r}/kind/version"
install -m 0644 "${here}/files/default-storage.yaml" "${r}/kind/manifests/default-storage.yaml"

# systemd in a container: only the units a node needs start. Package
# scripts enabled others (getty, timers, udev sockets); kind's base image
# removes the same links.
rm -f "${r}"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service \
  "${r}"/lib/systemd/system/multi-user.target.wants/* \
  "${r}"/etc/systemd/system/*.wants/* \
  "${r}"/lib/systemd/system/local-fs.target.wants/* \
  "${r}"/lib/systemd/system/sockets.target.wants/*udev* \
  "${r}"/lib/systemd/system/sockets.target.wants/*initctl* \
  "${r}"/lib/systemd/system/basic.target.wants/*
# Debian's sysctl.d defaults for a real machine set knobs the kernel does
# not namespace (fs.protected_*; kernel.pid_max on older kernels): in a
# node container systemd-sysctl would apply them to the host. kind's own
# files in /etc/sysctl.d only touch the node's network namespace.
rm -f "${r}/usr/lib/sysctl.d/99-protect-links.conf" "${r}/usr/lib/sysctl.d/50-pid-max.conf"
# The node's kernel log is the host's: reading it would only confuse.
echo "ReadKMsg=no" >>"${r}/etc/systemd/journald.conf"
systemctl --root="${r}" --quiet enable kubelet.service containerd.service undo-mount-hacks.service
# binfmt_misc registrations are kernel-wide.
systemctl --root="${r}" --quiet mask systemd-binfmt.service
# Each node container gets its own machine id at boot.
: >"${r}/etc/machine-id"
say "files in place in $(elapsed "${t}")"

# Preload: a throwaway containerd on the host, rooted in the image's
# /var/lib/containerd, imports the tarballs into namespace k8s.io without
# unpacking (no snapshot mounts needed here); the node's containerd finds
# them at start and unpacks each the first time a container uses it. kind
# gives each node an anonymous volume on /var, which Docker fills from the
# image, so the content reaches every node.
t=$(date +%s)
ctd="${work}/containerd"
mkdir -p "${ctd}"
cat >"${ctd}/config.toml" <<EOF
version = 2
root = "${r}/var/lib/containerd"
state = "${ctd}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "${ctd}/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "${ctd}/opt"
EOF
containerd --config "${ctd}/config.toml" >"${ctd}/log" 2>&1 &
ctd_pid=$!
for _ in $(seq 1 60); do
  ctr --address "${ctd}/containerd.sock" version >/dev/null 2>&1 && break
  kill -0 "${ctd_pid}" 2>/dev/null || { cat "${ctd}/log" >&2; say "containerd for the preload exited"; exit 1; }
  sleep 0.5
done
for t_img in "${preload[@]}"; do
  say "preloading $(basename "${t_img}")"
  ctr --address "${ctd}/containerd.sock" -n k8s.io images import --no-unpack --all-platforms "${t_img}" >&2
done
ctr --address "${ctd}/containerd.sock" -n k8s.io images list -q >"${ctd}/images"
for img in "${wanted[@]}"; do
  grep -qxF "${img}" "${ctd}/images" || { say "after import, containerd does not list ${img}"; exit 1; }
done
kill "${ctd_pid}"
wait "${ctd_pid}" 2>/dev/null || true
ctd_pid=
say "preloaded ${#wanted[@]} images in $(elapsed "${t}")"

# The image is written as a docker-archive by hand (one layer, the config
# kind's base image sets): `docker import` cannot set STOPSIGNAL, and the
# archive is also what a fresh engine loads instead of rebuilding.
t=$(date +%s)
a="${work}/archive"
mkdir -p "${a}"
tar -C "${r}" --numeric-owner --xattrs --xattrs-include='*' -cf "${a}/layer.tar" .
layer_sha="$(sha256sum "${a}/layer.tar" | cut -d' ' -f1)"
mkdir "${a}/${layer_sha}"
mv "${a}/layer.tar" "${a}/${layer_sha}/layer.tar"
# systemd checks $container to know it runs in one; it stops on
# SIGRTMIN+3 (SIGTERM makes it re-execute).
jq -n --arg diff "sha256:${layer_sha}" --arg created "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '{
  architecture: "amd64", os: "linux", created: $created,
  config: {
    Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=docker"],
    Entrypoint: ["/usr/local/bin/entrypoint", "/sbin/init"],
    StopSignal: "SIGRTMIN+3"
  },
  rootfs: {type: "layers", diff_ids: [$diff]},
  history: [{created: $created, created_by: "e2e/kind/node/build.sh"}]
}' >"${a}/config.json"
config_sha="$(sha256sum "${a}/config.json" | cut -d' ' -f1)"
mv "${a}/config.json" "${a}/${config_sha}.json"
jq -n --arg cfg "${config_sha}.json" --arg tag "${image}" --arg layer "${layer_sha}/layer.tar" \
  '[{Config: $cfg, RepoTags: [$tag], Layers: [$layer]}]' >"${a}/manifest.json"
tar -C "${a}" -cf "${archive}.tmp" manifest.json "${config_sha}.json" "${layer_sha}"
mv "${archive}.tmp" "${archive}"
say "archive ${archive} ($(du -h "${archive}" | cut -f1)) in $(elapsed "${t}")"

t=$(date +%s)
docker load -i "${archive}" >&2
say "loaded in $(elapsed "${t}")"
# Older archives are inputs nobody builds from any more.
for old in "${kdir}"/node-"${K8S_VERSION}"-*.tar; do
  [ "${old}" = "${archive}" ] || rm -f "${old}"
done
say "built ${image} in $(elapsed "${t_all}")"
echo "${image}"
