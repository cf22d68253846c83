// Package faults is doorman's failure-mode suite: Go tests behind the build
// tag e2e, on one local netns cluster (package cluster) shared by every
// test. Each test injects one fault (an agent killed or frozen, a node
// rebooted, the control plane or the API server stopped, a replica failing
// over, doorman's table edited from outside, a rejected update, a corrupt
// cache, hostile API objects) while client loops keep connecting through
// Services, and prints how many connections were attempted and failed.
//
//	make build && DOORMAN_BIN=$PWD/bin go test -tags e2e -count=1 -v -timeout 30m ./e2e/faults/
//
// It must not import doorman's controlplane or nodeagent packages: it runs
// their binaries and sees them only through their gRPC Inspect services,
// their metrics, their logs and the kernel (read over netlink).
package faults
