// Package hub is the thin, locked shell around the pure core: it feeds
// informer events into the model and the view, serialises access to the
// view and the differ, and wakes the stream of every node a change may
// concern. It holds no policy of its own.
//
// It may log; it must not import gRPC or client-go beyond API types.
package hub
