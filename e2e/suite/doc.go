// Package suite is doorman's end-to-end suite: Go tests behind the build
// tag e2e, run against a provider (package provider): the local netns
// cluster (default, started by TestMain) or a kind cluster
// (-e2e.provider=kind or DOORMAN_E2E_PROVIDER=kind, with KUBECONFIG).
//
// Each test is named after the row of SEMANTICS.md it proves. Run:
//
//	go test -tags e2e -v -count=1 ./e2e/suite/ [-e2e.services=10000]
//
// It must not import doorman's controlplane or nodeagent packages: it runs
// their binaries (built by TestMain into a temporary directory unless
// DOORMAN_BIN names a directory holding them).
package suite
