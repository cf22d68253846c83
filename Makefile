# doorman — build, test and verify. Everything runs as root on Linux; the
# kernel and e2e tests create their own network namespaces.

GO        ?= go
TOOL      := $(GO) tool -modfile=tools/go.mod
BIN       := bin
PKGS      := ./...
GOTESTFLAGS ?= -race -count=1

.PHONY: all build test unit e2e e2e-kind demo demo-down deps generate verify lint fmt tidy clean k8s-binaries

all: build

## build: compile both binaries into bin/
build:
	$(GO) build -o $(BIN)/ ./controlplane ./nodeagent

## deps: install what a fresh Debian machine lacks (apt packages, Go modules)
deps:
	bash hack/deps.sh

## test: every test — unit, kernel (network namespaces) and e2e on the local cluster
test: deps
	$(GO) test $(GOTESTFLAGS) -timeout 30m $(PKGS)
	$(MAKE) e2e

## k8s-binaries: build etcd, kube-apiserver, kube-controller-manager, kube-proxy, kubectl from source (cached)
k8s-binaries:
	bash e2e/hack/build-k8s.sh

## e2e: the e2e suite on a local cluster in network namespaces (E2E_FLAGS=-e2e.services=10000 for more)
e2e: k8s-binaries build
	DOORMAN_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e $(GOTESTFLAGS) -v -timeout 60m ./e2e/cluster/ ./e2e/suite/ $(E2E_FLAGS)

## e2e-kind: the same suite against a kind cluster (needs Docker and kind)
e2e-kind:
	bash e2e/kind/run.sh

## demo: a 3-node cluster in network namespaces with doorman on it, and the Bookstore walk-through
demo: deps
	$(GO) build -o $(BIN)/doorman-demo ./e2e/demo
	$(BIN)/doorman-demo

## demo-down: stop the demo cluster and remove its namespaces
demo-down:
	$(GO) build -o $(BIN)/doorman-demo ./e2e/demo
	$(BIN)/doorman-demo down

## unit: the unit and kernel tests only (no local cluster)
unit:
	$(GO) test $(GOTESTFLAGS) -timeout 20m $(PKGS)

## generate: regenerate the Go code from proto/
generate:
	$(TOOL) buf generate

## fmt: format Go and proto sources
fmt:
	gofmt -w $$(git ls-files '*.go')
	$(TOOL) buf format -w

## verify: fail on unformatted code, vet or lint findings, stale generated code, untidy go.mod
verify:
	@bash hack/verify.sh

lint:
	$(TOOL) golangci-lint run ./...

tidy:
	$(GO) mod tidy
	cd tools && $(GO) mod tidy

clean:
	rm -rf $(BIN)
