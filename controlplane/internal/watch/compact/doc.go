// Package compact holds the compact forms of Services and EndpointSlices:
// what the model reads of them, and nothing else. The informers' caches
// hold them instead of the decoded objects (see watch's transform) and the
// model keeps the same pointers: at 100,000 Services these objects are
// most of the control plane's memory, and a decoded object, even trimmed,
// is several times larger (pointer fields, maps, strings of its own for
// values every object repeats).
//
// Both forms are runtime.Objects whose identity meta.Accessor reads, as
// client-go's informer store needs for its keys. Strings that many objects
// repeat (namespaces, protocols, types, port, node and zone names) are
// shared.
//
// It imports API types only: watch makes the compact forms, the model
// reads them, and neither imports the other.
package compact
