# doorman — build, test and verify. Everything runs as root on Linux; the
# kernel and e2e tests create their own network namespaces.

GO        ?= go
TOOL      := $(GO) tool -modfile=tools/go.mod
BIN       := bin
PKGS      := ./...
GOTESTFLAGS ?= -race -count=1

# Every binary and test binary is built as the images build theirs: static
# (no cgo) and with trimmed paths. One compile of each package then serves
# bin/, the images, the kind suite and the benchmarks; a fresh machine
# compiles the whole dependency graph once for them instead of twice. Only
# the race detector needs cgo: unit and e2e turn it back on.
export CGO_ENABLED ?= 0
export GOFLAGS ?= -trimpath

BENCH_OUT ?= $(CURDIR)/out/bench.json
BENCH_SCALE_OUT ?= $(CURDIR)/out/bench-scale.json
SOAK_PLOT ?= $(CURDIR)/out/soak.png

.PHONY: all build test unit e2e e2e-kind conformance conformance-focused demo demo-down deps generate verify lint fmt tidy clean k8s-binaries bench bench-scale fuzz soak

all: build

## build: compile both binaries into bin/ (stamped with the commit: see internal/version)
build:
	$(GO) build -buildvcs=true -o $(BIN)/ ./controlplane ./nodeagent

## deps: install what a fresh Debian machine lacks (apt packages, Go modules)
deps:
	bash hack/deps.sh

## test: every test — unit, kernel (network namespaces), fuzzing, e2e on the local cluster, e2e on kind, upstream's focused sig-network set on kind, the quick benchmarks (hack/test.sh: kind's and conformance's builds run beside the earlier phases at idle priority)
test: deps
	MAKE="$(MAKE)" bash hack/test.sh

## fuzz: every fuzz target for a bounded time (FUZZTIME=10s each)
fuzz:
	bash hack/fuzz.sh

## k8s-binaries: build etcd, kube-apiserver, kube-controller-manager, kube-proxy, kubectl from source (cached)
k8s-binaries:
	bash e2e/hack/build-k8s.sh

## e2e: the e2e suite on a local cluster in network namespaces (E2E_FLAGS=-e2e.services=10000 for more)
e2e: k8s-binaries build
	CGO_ENABLED=1 DOORMAN_BIN=$(CURDIR)/$(BIN) $(GO) test -tags e2e $(GOTESTFLAGS) -v -timeout 60m ./e2e/cluster/ ./e2e/suite/ ./e2e/faults/ ./e2e/security/ $(E2E_FLAGS)

## bench: doorman vs kube-proxy nftables and iptables on the local cluster (BENCH_FLAGS=-full: 1,000/10,000/100,000 Services)
bench: deps k8s-binaries build
	@mkdir -p $(dir $(BENCH_OUT))
	BENCH_OUT=$(BENCH_OUT) $(GO) run ./e2e/bench -doorman-bin $(CURDIR)/$(BIN) -plot $(basename $(BENCH_OUT)).png $(BENCH_FLAGS)

## bench-scale: the control plane against simulated agents (quick: 1,000 agents, 2,000 Services; BENCH_FLAGS=-full: 5,000 / 10,000)
bench-scale: k8s-binaries build
	@mkdir -p $(dir $(BENCH_SCALE_OUT))
	BENCH_OUT=$(BENCH_SCALE_OUT) $(GO) run ./e2e/bench scale -doorman-bin $(CURDIR)/$(BIN) -plot $(basename $(BENCH_SCALE_OUT)).png $(BENCH_FLAGS)

## soak: 30 minutes of endpoint churn (50/s over 10,000 Services) with an agent restart and a control-plane failover in the middle; fails when RSS or goroutines grow over 5 % or an update is lost (not in make test; SOAK_FLAGS=-duration=5m for a short one)
soak: deps k8s-binaries build
	@mkdir -p $(dir $(SOAK_PLOT))
	$(GO) run ./e2e/bench soak -doorman-bin $(CURDIR)/$(BIN) -plot $(SOAK_PLOT) $(SOAK_FLAGS)

## e2e-kind: doorman as Pods on a 3-node kind cluster built here (Docker engine, node image, images all local; KEEP_CLUSTER=1 keeps it)
e2e-kind: deps
	bash e2e/kind/run.sh

## conformance: Kubernetes' sig-network e2e tests (v1.36.3) on kind, doorman beside kube-proxy nftables; table in out/conformance (CONFORMANCE_SUBSET=focused: the short set)
conformance: deps
	bash e2e/conformance/run.sh

## conformance-focused: upstream's focused sig-network set (sig-network [Conformance], session affinity, health check node ports, terminating endpoints, kube-proxy URLs) against doorman on kind; part of make test
conformance-focused: deps
	CONFORMANCE_SUBSET=focused bash e2e/conformance/run.sh doorman

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
	CGO_ENABLED=1 $(GO) test $(GOTESTFLAGS) -timeout 30m $(PKGS)

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
	$(TOOL) golangci-lint run --allow-parallel-runners ./...

tidy:
	$(GO) mod tidy
	cd tools && $(GO) mod tidy

clean:
	rm -rf $(BIN)
