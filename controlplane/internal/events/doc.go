// Package events posts Warning Events on Services whose authors must act:
// a Service sent without an address another Service owns
// (AddressConflict), a Service refused as a whole (InvalidService). It
// uses client-go's core/v1 event recorder: its correlator turns a repeat
// into a count on the same Event and throttles each Service's Events, and
// the client it writes with bounds the writes of all Services together.
// Recording never blocks: when the queue is full an Event is dropped.
//
// Every replica of the control plane computes the same conflicts and
// posts its own Event, marked with its source host; see Config.
//
// It may import client-go; the hub reaches it through hub.Events.
package events
