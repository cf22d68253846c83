#!/usr/bin/env bash
# Fails when the tree is not as `make fmt generate tidy` would leave it, or
# when vet, buf lint, buf breaking or golangci-lint (with the packages'
# import rules) find something, or when docs/flags.md is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
tool() { go tool -modfile=tools/go.mod "$@"; }
fail=0
step() { printf '== %s\n' "$*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

step gofmt
unformatted=$(gofmt -l $(git ls-files '*.go') 2>&1 || true)
if [ -n "$unformatted" ]; then echo "gofmt would change:"; echo "$unformatted"; fail=1; fi

step "go mod tidy"
if ! go mod tidy -diff; then echo "go.mod/go.sum are not tidy: run make tidy"; fail=1; fi
if ! (cd tools && go mod tidy -diff); then echo "tools/go.mod is not tidy: run make tidy"; fail=1; fi

step "buf format"
if ! tool buf format --diff --exit-code; then echo "proto files are not formatted: run make fmt"; fail=1; fi

step "buf lint"
tool buf lint || fail=1

# buf breaking checks the change under review against the proto files as
# they were just before it, so that every change is checked once against
# its predecessor: uncommitted edits of proto/ (or buf.yaml) against HEAD;
# on a clean tree, such as a fresh clone of main, the newest commit that
# touched proto/ against its parent. Comparing a clean tree with HEAD would
# check nothing. The baseline is read with git archive, so no network and
# no clone is needed; when the history does not hold it (a shallow clone, or
# that commit is the first one) the check is skipped, saying why.
breaking_baseline() {
  if ! git rev-parse --verify --quiet HEAD >/dev/null; then
    echo "no commit to compare with" >&2; return 1
  fi
  if [ -n "$(git status --porcelain -- proto buf.yaml | grep -E '(\.proto|buf\.yaml)$')" ]; then
    echo HEAD; return
  fi
  local last
  last=$(git log -1 --format=%h -- proto)
  if [ -z "$last" ]; then
    echo "no commit in this history touched proto/" >&2; return 1
  fi
  if ! git rev-parse --verify --quiet "$last^" >/dev/null; then
    if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
      echo "shallow clone: history stops at $last, so the proto files before their newest change are not here; git fetch --unshallow to check them" >&2
    else
      echo "$last, the newest commit touching proto/, is the first commit" >&2
    fi
    return 1
  fi
  echo "$last^"
}

step "buf breaking"
if base=$(breaking_baseline 2>"$tmp/why"); then
  echo "against $base"
  mkdir "$tmp/against"
  if ! git cat-file -e "$base:proto" 2>/dev/null; then
    echo "$base has no proto/: nothing to break"
  else
    git archive "$base" proto | tar -x -C "$tmp/against"
    git show "$base:buf.yaml" >"$tmp/against/buf.yaml" 2>/dev/null || cp buf.yaml "$tmp/against/"
    tool buf breaking --against "$tmp/against" || fail=1
  fi
else
  echo "skipped: $(cat "$tmp/why")"
fi

step "generated code"
cp -r proto "$tmp/before"
tool buf generate
if ! diff -r "$tmp/before" proto >/dev/null; then
  echo "generated code was stale (now regenerated): commit the result of make generate"
  diff -r "$tmp/before" proto | head -20
  fail=1
fi

step "go vet"
go vet ./... || fail=1

step "docs/flags.md"
go run ./hack/flagsdoc -check || fail=1

step golangci-lint
tool golangci-lint run --allow-parallel-runners ./... || fail=1

if [ "$fail" -ne 0 ]; then echo "verify: FAILED"; exit 1; fi
echo "verify: ok"
