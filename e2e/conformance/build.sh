#!/usr/bin/env bash
# build.sh builds what the upstream Kubernetes e2e tests need on this
# machine, from the sources e2e/k8sbuild pins (k8s.io/kubernetes v1.36.3):
#
#   e2e-sig-network.test  upstream's e2e suite with sig-network's specs
#             (the test binary of e2e/k8sbuild/signetwork: upstream's
#             framework and set-up, without the other SIGs' spec packages)
#   ginkgo    the runner, at the version k8s.io/kubernetes requires
#   agnhost   test/images/agnhost (the image is built by images.sh)
#   regression-issue-74839  test/images/regression-issue-74839 (likewise)
#
# e2e-sig-network.test and ginkgo go to ${DOORMAN_CACHE:-~/.cache/doorman}/k8s-v1.36.3/bin
# beside the other Kubernetes binaries; agnhost to the kind cache's bin,
# under the name e2e/kind/images.sh gives it, so it compiles once for both;
# regression-issue-74839 beside it.
# Only missing binaries are built. Usage:
#
#   e2e/conformance/build.sh [e2e-sig-network.test|ginkgo|agnhost|regression-issue-74839 ...]
#                                                  # default: all
#
# Prints the Kubernetes bin directory on its last line.
set -euo pipefail
shopt -s inherit_errexit

K8S_VERSION=v1.36.3
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
k8sbuild="${repo}/e2e/k8sbuild"
cache="${DOORMAN_CACHE:-${HOME}/.cache/doorman}"
bin="${cache}/k8s-${K8S_VERSION}/bin"
kindbin="${cache}/kind/bin"
mkdir -p "${bin}" "${kindbin}"

say() { echo "conformance-build: $*" >&2; }

want=("$@")
if [ ${#want[@]} -eq 0 ]; then want=(e2e-sig-network.test ginkgo agnhost regression-issue-74839); fi

# The version the e2e binary reports (and checks against the server's) is set
# the way upstream's release build sets it.
version_flags="-X k8s.io/component-base/version.gitVersion=${K8S_VERSION}
 -X k8s.io/component-base/version.gitMajor=1
 -X k8s.io/component-base/version.gitMinor=36
 -X k8s.io/component-base/version.gitTreeState=clean
 -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}
 -X k8s.io/client-go/pkg/version.gitMajor=1
 -X k8s.io/client-go/pkg/version.gitMinor=36"

# agnhost_path: the name images.sh uses, a hash of the module files that
# pin its sources.
agnhost_path() {
  echo "${kindbin}/agnhost-$(cat "${k8sbuild}/go.mod" "${k8sbuild}/go.sum" | sha256sum | cut -c1-12)"
}

# regression_path: the Conntrack test's server that sends an out-of-window
# packet (test/images/regression-issue-74839), named the same way.
regression_path() {
  echo "${kindbin}/regression-issue-74839-$(cat "${k8sbuild}/go.mod" "${k8sbuild}/go.sum" | sha256sum | cut -c1-12)"
}

# compile NAME TARGET CMD...: runs CMD in e2e/k8sbuild writing TARGET.tmp,
# with a ticker so a long compile is visibly alive.
compile() {
  local name="$1" target="$2"; shift 2
  local start rc ticker
  start=$(date +%s)
  say "building ${name} (several minutes on 2 cores)"
  ( while sleep 60; do say "  ${name} still compiling, $(( $(date +%s) - start ))s"; done ) &
  ticker=$!
  set +e
  (cd "${k8sbuild}" && CGO_ENABLED=0 GOFLAGS=-mod=readonly "$@")
  rc=$?
  set -e
  kill "${ticker}" 2>/dev/null || true
  wait "${ticker}" 2>/dev/null || true
  if [ ${rc} -ne 0 ]; then
    rm -f "${target}.tmp"
    say "${name} failed (exit ${rc})"
    exit ${rc}
  fi
  mv "${target}.tmp" "${target}"
  say "built ${name} in $(( $(date +%s) - start ))s"
}

# check_signetwork: fails when a package of the pinned e2e tree that
# registers sig-network specs is not compiled into e2e-sig-network.test,
# so a new pin cannot silently drop tests upstream's e2e.test would run.
# A package registers them when it declares sig-network's SIGDescribe or
# imports a package that does. Left out on purpose, each skipped here
# anyway: GCE's own tests (test/e2e/cloud/gcp/...) and the kube-proxy
# DaemonSet migration of GCE's upgrade scripts (test/e2e/upgrades/network,
# [Disruptive]).
check_signetwork() {
  local e2e="k8s.io/kubernetes/test/e2e" dir declared missing
  # Downloaded first: on a fresh machine nothing has fetched it yet.
  dir="$(cd "${k8sbuild}" && GOFLAGS=-mod=readonly go mod download -json k8s.io/kubernetes |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "${dir}/test/e2e" ] || { say "no k8s.io/kubernetes sources in the module cache (${dir:-none})"; exit 1; }
  declared="$(grep -rl --include='*.go' --exclude='*_test.go' -e 'SIGDescribe("network")' -e '"sig-network"' "${dir}/test/e2e" |
    xargs -n1 dirname | sort -u | sed "s#^${dir}#k8s.io/kubernetes#")"
  missing="$(
    {
      echo "${declared}"
      (cd "${k8sbuild}" && GOFLAGS=-mod=readonly go list -e -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' "${e2e}/...") |
        awk -v d=" $(echo "${declared}" | tr '\n' ' ')" '{for (i = 2; i <= NF; i++) if (index(d, " " $i " ")) {print $1; break}}'
    } | sort -u |
      grep -v -x -e "${e2e}/feature" -e "${e2e}/framework/service" -e "${e2e}/cloud/gcp" -e "${e2e}/cloud/gcp/network" -e "${e2e}/upgrades/network" |
      comm -23 - <(cd "${k8sbuild}" && GOFLAGS=-mod=readonly go list -deps -test ./signetwork | sort -u)
  )"
  if [ -n "${missing}" ]; then
    say "packages with sig-network specs missing from e2e/k8sbuild/signetwork (import them there):"
    printf '  %s\n' ${missing} >&2
    exit 1
  fi
}

for w in "${want[@]}"; do
  case "${w}" in
    e2e-sig-network.test)
      t="${bin}/e2e-sig-network.test"
      check_signetwork
      [ -x "${t}" ] || compile e2e-sig-network.test "${t}" \
        go test -c -trimpath -ldflags "-s -w ${version_flags}" -o "${t}.tmp" ./signetwork
      ;;
    ginkgo)
      t="${bin}/ginkgo"
      [ -x "${t}" ] || compile ginkgo "${t}" \
        go build -trimpath -ldflags "-s -w" -o "${t}.tmp" github.com/onsi/ginkgo/v2/ginkgo
      ;;
    agnhost)
      t="$(agnhost_path)"
      [ -x "${t}" ] || compile agnhost "${t}" \
        go build -trimpath -ldflags "-s -w" -o "${t}.tmp" k8s.io/kubernetes/test/images/agnhost
      ;;
    regression-issue-74839)
      t="$(regression_path)"
      [ -x "${t}" ] || compile regression-issue-74839 "${t}" \
        go build -trimpath -ldflags "-s -w" -o "${t}.tmp" k8s.io/kubernetes/test/images/regression-issue-74839
      ;;
    *) say "unknown binary ${w} (want e2e-sig-network.test, ginkgo, agnhost or regression-issue-74839)"; exit 2 ;;
  esac
done
echo "${bin}"
