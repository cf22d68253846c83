// Package app wires the control plane: informers → hub (model, view,
// differ) → gRPC server, plus the HTTP health endpoints. main.go and the
// whole-path tests call Run.
package app
