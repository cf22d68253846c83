#!/usr/bin/env bash
# Fails when the tree is not as `make fmt generate tidy` would leave it, or
# when vet, buf lint or golangci-lint find something.
set -euo pipefail
cd "$(dirname "$0")/.."
tool() { go tool -modfile=tools/go.mod "$@"; }
fail=0
step() { printf '== %s\n' "$*"; }

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

step "generated code"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r proto "$tmp/before"
tool buf generate
if ! diff -r "$tmp/before" proto >/dev/null; then
  echo "generated code was stale (now regenerated): commit the result of make generate"
  diff -r "$tmp/before" proto | head -20
  fail=1
fi

step "go vet"
go vet ./... || fail=1

step golangci-lint
tool golangci-lint run --allow-parallel-runners ./... || fail=1

if [ "$fail" -ne 0 ]; then echo "verify: FAILED"; exit 1; fi
echo "verify: ok"
