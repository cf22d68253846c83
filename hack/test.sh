#!/usr/bin/env bash
# test.sh (make test): every test, one phase after another —
#
#   1. unit and kernel tests, with -race         (make unit)
#   2. every fuzz target for a bounded time      (make fuzz)
#   3. e2e on the local netns cluster            (make e2e)
#   4. e2e on kind                               (make e2e-kind)
#   5. upstream's focused sig-network set        (make conformance-focused)
#   6. the quick benchmarks                      (make bench bench-scale)
#
# Phases 3 to 5 first build a lot from source on a fresh machine (the
# Kubernetes binaries, kind, every image, the node image's inputs, upstream's
# e2e suite), and the phases before them leave much of the CPU idle while
# they wait on their clusters and kernels. So e2e/hack/prepare.sh builds
# phase 3's inputs, then phase 4's, then phase 5's, from the start, in the
# background, at idle priority (SCHED_IDLE and the idle I/O class: it is
# scheduled only on CPU time the tests leave, though the tests' compiles
# still run somewhat slower beside it on 2 cores). Each phase waits for its
# part before it starts, so it never compiles what the preparation is
# compiling, and a failed preparation fails the run. The benchmarks come
# last so that nothing runs beside them.
#
# The preparation's log: out/test/prepare.log. Time per phase is printed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."

make="${MAKE:-make}"
out=out/test
mkdir -p "${out}"
log="${out}/prepare.log"
started=$(date +%s)
timings=()

say() { echo "==> test: $*"; }

# phase NAME CMD...: runs CMD, noting how long it took.
phase() {
  local name="$1" t; shift
  t=$(date +%s)
  say "${name}"
  "$@"
  timings+=("$(printf '%-44s %5ss' "${name}" $(( $(date +%s) - t )))")
}

summary() {
  local rc=$?
  if [ -n "${prep:-}" ] && kill -0 "${prep}" 2>/dev/null; then
    kill -- "-${prep}" 2>/dev/null || true
    wait "${prep}" 2>/dev/null || true
  fi
  say "time per phase"
  printf '    %s\n' "${timings[@]}"
  echo "    total                                        $(( $(date +%s) - started ))s"
  exit "${rc}"
}
trap summary EXIT

# The preparation runs in its own session, so that one signal reaches every
# compiler it started, and it reports each stage in its log.
setsid chrt --idle 0 ionice -c 3 bash e2e/hack/prepare.sh netns kind conformance >"${log}" 2>&1 &
prep=$!
# Not a process group leader when started, setsid makes it one without
# forking: its group is its pid, which the trap signals.
pgid() { ps -o pgid= -p "${prep}" | tr -d ' '; }
for _ in $(seq 50); do
  [ "$(pgid)" = "${prep}" ] && break
  sleep 0.1
done
if kill -0 "${prep}" 2>/dev/null && [ "$(pgid)" != "${prep}" ]; then
  echo "test: the preparation (pid ${prep}) did not get its own process group" >&2
  exit 1
fi
say "preparing the e2e phases in the background (pid ${prep}, log ${log})"

# await STAGE: returns when prepare.sh finished STAGE; fails if it failed.
await() {
  local stage="$1" t
  t=$(date +%s)
  until grep -q "^prepare: ${stage} done" "${log}"; do
    if ! kill -0 "${prep}" 2>/dev/null; then
      grep -q "^prepare: ${stage} done" "${log}" && break
      wait "${prep}" || true
      echo "test: preparing ${stage} failed; the end of ${log}:" >&2
      tail -n 40 "${log}" >&2
      exit 1
    fi
    sleep 2
  done
  timings+=("$(printf '%-44s %5ss' "waiting for the ${stage} preparation" $(( $(date +%s) - t )))")
}

phase "unit and kernel tests (-race)" "${make}" unit
phase "fuzzing" "${make}" fuzz
await netns
phase "e2e on the netns cluster" "${make}" e2e
await kind
phase "e2e on kind" "${make}" e2e-kind
await conformance
wait "${prep}"
prep=
phase "upstream's focused sig-network set on kind" "${make}" conformance-focused
phase "quick benchmarks" "${make}" bench bench-scale
