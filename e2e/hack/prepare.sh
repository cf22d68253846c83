#!/usr/bin/env bash
# prepare.sh builds ahead of time what make test's kind and conformance
# phases build first: it starts no Docker engine and no cluster, so
# hack/test.sh can run it beside the phases before them, at idle priority.
# Each step is one of the phases' own cache-aware scripts: what it built,
# the phase finds and reuses; anything it did not get to, the phase still
# builds itself.
#
#   e2e/hack/prepare.sh kind           # make e2e-kind: kind, the Kubernetes
#                                      # binaries, every image, the node
#                                      # image's inputs, the tests' binaries
#   e2e/hack/prepare.sh conformance    # make conformance-focused: e2e.test,
#                                      # ginkgo, the images upstream's tests
#                                      # start, the results table
#
# Several stages run in the order given.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { echo "prepare: $*" >&2; }

# compile_tests TAGS PKG...: the test binaries of PKG, into the build cache.
compile_tests() {
  local tags="$1" dir; shift
  dir="$(mktemp -d)"
  go test -tags "${tags}" -c -o "${dir}/" "$@"
  rm -rf "${dir}"
}

[ $# -gt 0 ] || { say "name a stage: kind or conformance"; exit 2; }
for stage in "$@"; do
  t=$(date +%s)
  say "${stage}"
  case "${stage}" in
    kind)
      # What only kind needs first, then what also the netns cluster
      # builds (hack/test.sh builds that in front meanwhile).
      bash e2e/kind/kind-binary.sh >/dev/null
      bash e2e/hack/build-k8s.sh kube-scheduler kubelet kubeadm >/dev/null
      bash e2e/kind/node/build.sh --inputs
      bash e2e/hack/build-k8s.sh >/dev/null
      bash e2e/kind/images.sh control-plane doorman test >/dev/null
      # make e2e-kind runs these without -race.
      compile_tests e2e ./e2e/suite/ ./e2e/kind/
      ;;
    conformance)
      bash e2e/conformance/build.sh >/dev/null
      bash e2e/conformance/images.sh >/dev/null
      go build -o /dev/null ./e2e/conformance/table
      ;;
    *) say "unknown stage ${stage} (want kind or conformance)"; exit 2 ;;
  esac
  say "${stage} done in $(( $(date +%s) - t ))s"
done
