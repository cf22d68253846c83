#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZTIME, default 10s each):
# the readers of untrusted input — stream messages both ways, cache
# records, nftables event messages, the model's API objects, and the
# agent stream's admission (any authorization header, any first messages);
# and the renderer's Summary of any view, which a restart trusts as View.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
targets=(
  "./controlplane/internal/model FuzzPorts"
  "./controlplane/internal/differ FuzzSyncRequest"
  "./nodeagent/internal/state FuzzApply"
  "./nodeagent/internal/cache FuzzDecodeEntry"
  "./nodeagent/internal/cache FuzzDecodeMeta"
  "./nodeagent/internal/drift FuzzDecoder"
  "./controlplane/internal/auth FuzzTokenExpiry"
  "./controlplane/internal/auth FuzzNodeBinding"
  "./controlplane/internal/model FuzzServiceCIDRs"
  "./nodeagent/internal/render FuzzSummary"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "== fuzz $2 ($1) for $fuzztime"
  go test -run '^$' -fuzz "^$2\$" -fuzztime "$fuzztime" "$1"
done
