// Package state is the node agent's view of what its node must program: the
// entries by key, the version of the last update applied, the bucket and
// view digests the agent reports on resume, and an index from bucket to
// keys.
//
// It owns the validation of updates from the control plane: an update is
// checked whole before anything changes, so a malformed one is rejected with
// an error naming the offending key and leaves the view as it was. Applying
// costs O(size of the update), except for full updates and replaced buckets,
// which visit what the agent holds in them.
//
// state is pure: it takes values and returns values. It must not import
// gRPC, netlink, bbolt, the dataplane, a clock or a logger, and it is not
// safe for concurrent use; its caller serialises access.
package state
