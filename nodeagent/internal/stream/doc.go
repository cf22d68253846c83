// Package stream is the node agent's gRPC client: it dials the control
// planes in turn, opens AgentService.Sync, says Hello with what the agent
// holds and the stream protocol and build it speaks (internal/version), hands each update to the agent and sends back its Ack or Nack. When
// a stream ends it reconnects with capped exponential backoff and jitter,
// moving on to the next control plane. An update the agent refuses as
// behind what it applied ends the stream the same way, so another replica
// is tried; once refusals have lasted AcceptBehindAfter with nothing
// accepted (every replica behind: the cluster's data went back), the next
// one is accepted and logged as an error. A control plane that does not
// serve the agent's protocol refuses the Hello (FailedPrecondition): logged
// as an error and retried like any ended stream, never fatal. The addresses come from a
// function read before each attempt, so a watcher of the control plane's
// endpoints (the discovery package) can change them; while the list is
// empty the loop waits.
//
// stream owns the clock and the network; every decision about an update is
// the agent package's. It must not import the dataplane, bbolt or netlink.
package stream
