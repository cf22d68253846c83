// Package health serves /healthz (the process is up) and /readyz (the
// informers have synced and agents are being served) over HTTP.
//
// It knows nothing about the model or gRPC; readiness is a function.
package health
