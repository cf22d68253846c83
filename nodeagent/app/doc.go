// Package app wires the node agent: the cache, the dataplane, the agent
// state machine, the stream to the control planes, the drift monitor and
// its periodic resync, the discovery of control-plane replicas from their
// Service's EndpointSlices (when asked), the follow-ups of each commit (conntrack clean-up,
// healthCheckNodePort servers), the local Inspect service (its kernel reads
// on a dataplane connection of their own, so they never wait for an
// update), /healthz and /livez (fed by the stream's receipts, the kernel's
// commits and the drift monitor's signals, never by asking the agent),
// and /metrics. A cached view older than MaxCacheAge is dropped, not
// programmed. Texts of kernel errors and the stream's log values are
// bounded. main.go only parses flags, builds the logger and the
// listeners, and calls Run; the whole-path test calls Run too.
//
// Cleanup is the other mode (--cleanup, for uninstalling): it waits until
// no agent holds the cache, then deletes doorman's table and the cache.
//
// app owns no logic of its own beyond the order of start-up and shutdown:
// the drift monitor subscribes before the cached view is programmed, the
// cached view is programmed before any control plane is dialled (with the
// dataplane's Mark the cache stored with the view, so that a kernel nobody
// changed since is not read back), and on the
// way out the kernel's rules are left in place (never flushed). Its
// Prometheus registry is private to each Run.
package app
