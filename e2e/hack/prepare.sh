#!/usr/bin/env bash
# prepare.sh builds ahead of time what make test's e2e phases build first:
# it starts no Docker engine and no cluster, so hack/test.sh can run it
# beside the phases before them, at idle priority. Each step is one of the
# phases' own cache-aware scripts or a plain compile into Go's build cache:
# what it built, the phase finds and reuses; anything it did not get to,
# the phase still builds itself.
#
#   e2e/hack/prepare.sh netns          # make e2e: the Kubernetes binaries
#                                      # the netns cluster runs, doorman's
#                                      # binaries' packages
#   e2e/hack/prepare.sh kind           # make e2e-kind: kind, the other
#                                      # Kubernetes binaries, every image,
#                                      # the node image's inputs, the
#                                      # tests' binaries, the benchmarks'
#   e2e/hack/prepare.sh conformance    # make conformance-focused: upstream's
#                                      # e2e suite, ginkgo, the images
#                                      # upstream's tests start, the
#                                      # results table
#
# Several stages run in the order given. Each step's time goes to stderr.
# The build flags come from the environment (the Makefile exports them), so
# run it the way the phases run, through make, for the cache to serve them.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { echo "prepare: $*" >&2; }

# step NAME CMD...: runs CMD, its output to stderr, and says how long it took.
step() {
  local name="$1" t; shift
  t=$(date +%s)
  "$@" >&2
  say "  ${name}: $(( $(date +%s) - t ))s"
}

# compile_tests TAGS PKG...: the test binaries of PKG, into the build cache.
compile_tests() {
  local tags="$1" dir; shift
  dir="$(mktemp -d)"
  go test -tags "${tags}" -c -o "${dir}/" "$@"
  rm -rf "${dir}"
}

[ $# -gt 0 ] || { say "name a stage: netns, kind or conformance"; exit 2; }
for stage in "$@"; do
  t=$(date +%s)
  say "${stage}"
  case "${stage}" in
    netns)
      # make e2e builds bin/ and runs its harness with -race (the unit
      # phase compiles that variant); this is the rest.
      step "Kubernetes binaries (netns cluster)" bash e2e/hack/build-k8s.sh
      step "doorman's packages" go build -buildvcs=true ./controlplane ./nodeagent
      ;;
    kind)
      step "kind" bash e2e/kind/kind-binary.sh
      step "Kubernetes binaries (kind)" bash e2e/hack/build-k8s.sh kube-scheduler kubelet kubeadm
      step "node image inputs" bash e2e/kind/node/build.sh --inputs
      step "images" bash e2e/kind/images.sh control-plane doorman test
      # make e2e-kind runs these without -race.
      step "kind tests" compile_tests e2e ./e2e/suite/ ./e2e/kind/
      step "benchmarks" go build -o /dev/null ./e2e/bench
      ;;
    conformance)
      step "upstream's e2e suite, ginkgo, agnhost" bash e2e/conformance/build.sh
      step "conformance images" bash e2e/conformance/images.sh
      step "results table" go build -o /dev/null ./e2e/conformance/table
      ;;
    *) say "unknown stage ${stage} (want netns, kind or conformance)"; exit 2 ;;
  esac
  say "${stage} done in $(( $(date +%s) - t ))s"
done
