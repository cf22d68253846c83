// Package state is the node agent's view of what its node must program: the
// entries by key, the version of the last update applied, the bucket and
// view digests the agent reports on resume.
//
// It checks updates from the control plane as messages: a broken one
// (version 0, duplicate or empty keys, a bucket out of range) is rejected
// whole with an error naming the offending key and leaves the view as it
// was. Each entry is checked with doormanv1.ValidateEntry, the definition
// of a valid entry the control plane shares: one that fails does not fail
// the update; the view holds it (its digests stay the control plane's) and
// lists it in Applied.Invalid for the agent to keep out of the kernel.
// Applying
// costs O(size of the update), except for full updates and replaced buckets,
// which visit what the agent holds in them.
//
// state is pure: it takes values and returns values. It must not import
// gRPC, netlink, bbolt, the dataplane, a clock or a logger, and it is not
// safe for concurrent use; its caller serialises access.
package state
