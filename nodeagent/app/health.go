package app

import (
	"context"
	"errors"

	"google.golang.org/grpc/stats"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	"github.com/doorman-proxy/doorman/nodeagent/internal/inspect"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// healthKernel tells the health state each committed transaction (a Sync
// that left some entries out committed too) and the Node entry of the
// view it committed, and bounds the texts of the kernel's errors, which
// the agent keeps (Inspect, the NACK, the log) for as long as a Service
// stays refused.
type healthKernel struct {
	agent.Kernel
	health *healthcheck.Proxy
}

// Unchanged passes the question on (see agent.Unchanging).
func (k *healthKernel) Unchanged() bool { return agent.Unchanged(k.Kernel) }

func (k *healthKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	stats, err := k.Kernel.Sync(view)
	if committed(err) {
		k.health.SetNode(view[doormanv1.NodeKey].GetNode())
	}
	return k.done(stats, err)
}

func (k *healthKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	stats, err := k.Kernel.Apply(changes)
	if committed(err) {
		for _, c := range changes {
			if c.Key == doormanv1.NodeKey {
				k.health.SetNode(c.New.GetNode())
			}
		}
	}
	return k.done(stats, err)
}

// committed reports whether a transaction that returned err committed: it
// did when it left only some entries out.
func committed(err error) bool {
	var partial *dataplane.InvalidEntriesError
	return err == nil || errors.As(err, &partial)
}

func (k *healthKernel) done(stats dataplane.Stats, err error) (dataplane.Stats, error) {
	if committed(err) {
		k.health.Programmed()
	}
	for key, why := range stats.NotProgrammed {
		stats.NotProgrammed[key] = boundError(why)
	}
	var partial *dataplane.InvalidEntriesError
	if errors.As(err, &partial) {
		cut := &dataplane.InvalidEntriesError{Entries: make(map[string]error, len(partial.Entries))}
		for key, why := range partial.Entries {
			cut.Entries[key] = boundError(why)
		}
		return stats, cut
	}
	return stats, boundError(err)
}

// boundError is err with its text cut to inspect.MaxText; errors.Is and
// As still see err.
func boundError(err error) error {
	if err == nil || len(err.Error()) <= inspect.MaxText {
		return err
	}
	return &cutError{err: err, text: inspect.Cut(err.Error(), inspect.MaxText)}
}

type cutError struct {
	err  error
	text string
}

func (e *cutError) Error() string { return e.text }
func (e *cutError) Unwrap() error { return e.err }

// receivedHandler tells the health state when an update arrives from the
// control plane: the agent's only client stream is the one that receives
// them, one at a time.
type receivedHandler struct{ health *healthcheck.Proxy }

func (h *receivedHandler) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return ctx
}

func (h *receivedHandler) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.InPayload); ok && p.IsClient() {
		h.health.QueuedUpdate()
	}
}

func (h *receivedHandler) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (h *receivedHandler) HandleConn(context.Context, stats.ConnStats) {}

// healthObserver tells the health state that an update was answered. The
// commits it made were told by healthKernel; an update answered without
// the kernel (nothing to change, or refused before it) is done too. A NACK
// after the kernel failed leaves the update waiting until a transaction
// commits (the next update, or a resync).
type healthObserver struct{ health *healthcheck.Proxy }

func (o *healthObserver) Updated(out agent.Outcome) {
	if out.Err == nil || (!out.Synced && out.ApplyErr == nil) {
		o.health.Answered()
	}
}

// observers tells each observer in turn.
type observers []interface{ Updated(agent.Outcome) }

func (os observers) Updated(out agent.Outcome) {
	for _, o := range os {
		o.Updated(out)
	}
}
