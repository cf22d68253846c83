// Package health serves /healthz (the process is up) and /readyz (the
// informers have synced and still hear from the API server, so agents are
// served what is current) over HTTP.
//
// It knows nothing about the model, the informers or gRPC; readiness is a
// list of checks, each a function.
package health
