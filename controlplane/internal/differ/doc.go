// Package differ decides what each connected node must receive next: the
// resume update after a Hello (only the buckets whose digests differ, or the
// full view when the node holds nothing), then one update per change holding
// the current value of every key that changed since the node's last
// acknowledged version (coalesced), with at most one update in flight per
// node. A Nack is recorded and not answered by resending. A Hello from an
// agent whose stream protocol it does not serve (internal/version's skew
// rule) is refused with a *version.SkewError.
//
// It is pure: it works on a view.View and returns wire.Update values. It
// must not import gRPC, client-go, logging or read a clock; the stream
// loop that sends updates lives in the server package.
package differ
