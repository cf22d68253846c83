package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Default reconnect delays.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// DefaultAcceptBehindAfter is how long updates behind what the agent has
// applied (see agent.Freshness) are refused before one is accepted: twice
// the control plane's default --stale-after (5 minutes), so a replica whose
// watch stalled is taken out of its Service first, and short enough that a
// cluster whose etcd was restored from a backup (every replica behind) is
// followed within minutes.
const DefaultAcceptBehindAfter = 10 * time.Minute

// Keepalive is the default client keepalive: a ping after 30 s without
// activity, even with no stream open, and the connection is given up when
// no answer comes within 10 s. A control plane that died without closing
// its connections (power loss, a partition) is noticed within about 40 s
// and the agent moves to the next one. The control plane must allow it:
// keepalive.EnforcementPolicy{MinTime: 20 * time.Second,
// PermitWithoutStream: true} or looser; otherwise it answers the pings with
// GOAWAY (too_many_pings).
var Keepalive = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// MaxMessageBytes is the largest update the agent accepts. A full view
// takes about 130 bytes per Service port (13 MB at 100,000), far over
// gRPC's default of 4 MiB; this allows about two million while bounding
// what a faulty control plane can make the agent allocate.
const MaxMessageBytes = 256 << 20

// Observer is told the outcome of each update (metrics).
type Observer interface {
	Updated(agent.Outcome)
}

// Config configures Run.
type Config struct {
	// Targets returns the control planes' host:port addresses, read again
	// before each attempt so that the list may change (discovery); they
	// are tried in turn. An empty list makes Run wait and ask again.
	Targets func() []string
	// DialOptions come after the Keepalive default and may override it.
	DialOptions []grpc.DialOption
	Agent       *agent.Agent
	// Observer may be nil.
	Observer Observer
	Logger   hclog.Logger
	// MinBackoff and MaxBackoff bound the delay between attempts; zero
	// means the defaults.
	MinBackoff, MaxBackoff time.Duration
	// AcceptBehindAfter: once updates behind what the agent has applied
	// have been refused for this long, with nothing accepted meanwhile,
	// the next one is accepted (and logged as such): every control plane
	// is behind, so the cluster's data went back. Zero means
	// DefaultAcceptBehindAfter; negative, never.
	AcceptBehindAfter time.Duration
}

// Run keeps a stream open to one of the control planes until ctx is done,
// then returns nil. It returns an error only for a configuration it cannot
// use.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Targets == nil {
		return errors.New("stream: no control plane")
	}
	if cfg.Agent == nil {
		return errors.New("stream: no agent")
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	minB, maxB := cfg.MinBackoff, cfg.MaxBackoff
	if minB <= 0 {
		minB = DefaultMinBackoff
	}
	if maxB < minB {
		maxB = max(DefaultMaxBackoff, minB)
	}
	opts := append([]grpc.DialOption{
		grpc.WithKeepaliveParams(Keepalive),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes)),
	}, cfg.DialOptions...)
	failures := 0
	target := ""
	waiting := false
	refusals := &refusals{acceptAfter: cfg.AcceptBehindAfter}
	if refusals.acceptAfter == 0 {
		refusals.acceptAfter = DefaultAcceptBehindAfter
	}
	for {
		targets := cfg.Targets()
		if len(targets) == 0 {
			if !waiting {
				log.Warn("no control plane address yet; waiting")
				cfg.Agent.SetError(errNoTarget)
				waiting = true
			}
			delay := Backoff(failures, minB, maxB, rand.Float64())
			failures = min(failures+1, 32)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			continue
		}
		waiting = false
		target = Next(targets, target)
		s := &session{target: target, opts: opts, agent: cfg.Agent, observer: cfg.Observer, refusals: refusals, log: log.With("control_plane", target)}
		err := s.run(ctx)
		cfg.Agent.SetConnection(target, false)
		if ctx.Err() != nil {
			return nil
		}
		if s.acked > 0 {
			failures = 0
		}
		delay := Backoff(failures, minB, maxB, rand.Float64())
		failures = min(failures+1, 32)
		cfg.Agent.SetError(err)
		if status.Code(err) == codes.FailedPrecondition {
			// Not served: version skew. Another replica may serve it
			// (a control plane upgrade under way); retried as any other.
			log.Error("control plane refused this agent's version", "control_plane", target, "agent_version", version.Get().String(), "error", err, "retry_in", delay)
		} else {
			log.Warn("stream ended", "control_plane", target, "error", err, "acked", s.acked, "retry_in", delay)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

var errNoTarget = errors.New("no control plane address known")

// Static returns Targets for a fixed list.
func Static(targets ...string) func() []string {
	return func() []string { return targets }
}

// Next is the target to try after last: the one following it in targets,
// or the first when last is not (or no longer) among them. targets must
// not be empty.
func Next(targets []string, last string) string {
	for i, t := range targets {
		if t == last {
			return targets[(i+1)%len(targets)]
		}
	}
	return targets[0]
}

// Backoff is the delay before the next attempt after failures attempts in
// a row: lo doubled per failure, capped at hi, then spread by jitter
// (in [0, 1)) over its upper half, so that agents that lost the same
// control plane do not all come back at once.
func Backoff(failures int, lo, hi time.Duration, jitter float64) time.Duration {
	d := lo
	for i := 0; i < failures && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + time.Duration(jitter*float64(d/2))
}

type session struct {
	target   string
	opts     []grpc.DialOption
	agent    *agent.Agent
	observer Observer
	refusals *refusals
	log      hclog.Logger
	acked    int
	// marker is the control plane's freshness marker as this stream's
	// updates have carried it so far (see agent.Carry).
	marker agent.Marker
}

// refusals times updates refused for being behind, across sessions.
type refusals struct {
	acceptAfter time.Duration
	since       time.Time // the first refusal since an update was handled; zero: none
}

// accept reports whether an update behind may be accepted at now, and
// starts the clock at the first refusal.
func (r *refusals) accept(now time.Time) bool {
	if r.since.IsZero() {
		r.since = now
	}
	return r.acceptAfter >= 0 && now.Sub(r.since) >= r.acceptAfter
}

// handled stops the clock: an update was not behind, or was accepted.
func (r *refusals) handled() { r.since = time.Time{} }

// errResume ends a session whose view disagrees with the control plane's,
// so that the next Hello's bucket digests bring it back in line.
var errResume = errors.New("view digest mismatch: resuming")

func (s *session) run(ctx context.Context) error {
	conn, err := grpc.NewClient(s.target, s.opts...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.target, err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := doormanv1.NewAgentServiceClient(conn).Sync(ctx)
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", s.target, err)
	}
	hello := s.agent.Hello()
	hello.GetHello().Protocol = version.Protocol
	hello.GetHello().AgentVersion = version.Get().String()
	if err := stream.Send(hello); err != nil {
		return fmt.Errorf("send hello to %s: %w", s.target, recvErr(stream, err))
	}
	s.agent.SetConnection(s.target, true)
	s.log.Info("connected", "version", hello.GetHello().GetHolding().GetVersion())
	connected := time.Now()
	for first := true; ; first = false {
		u, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("receive from %s: %w", s.target, err)
		}
		received := time.Now()
		// The update carries the freshness markers that moved since the
		// previous one on this stream (stream protocol 3); the agent
		// judges it by the whole marker.
		s.marker = agent.Carry(s.marker, u.GetFreshness())
		u.Freshness = s.marker
		out, err := s.handle(u)
		if err != nil {
			return err
		}
		out.Received = received
		s.logOutcome(out)
		if first {
			// Where a start-up's time goes before the kernel: the control
			// plane's answer to the hello, its transfer and decoding
			// (received), then the state and the kernel (handled).
			s.log.Info("first update of the stream", "version", out.Version, "changes", out.Changes, "full_sync", out.Synced,
				"received_after", received.Sub(connected), "handled_in", time.Since(received))
		}
		if s.observer != nil {
			s.observer.Updated(out)
		}
		if err := stream.Send(out.Reply); err != nil {
			return fmt.Errorf("send reply to %s: %w", s.target, recvErr(stream, err))
		}
		if out.Err == nil {
			s.acked++
		}
		if out.Resume {
			return errResume
		}
	}
}

// handle hands the update to the agent. An update behind what the agent
// has applied is refused (the error ends the stream, so another control
// plane is tried) until refusals have lasted AcceptBehindAfter; then it is
// accepted.
func (s *session) handle(u *doormanv1.SyncResponse) (agent.Outcome, error) {
	out := s.agent.Handle(u)
	if out.Resume && out.Reply == nil {
		// Unapplied: this stream's Hello said what the cache recorded,
		// and the view restored from it holds something else.
		s.log.Info("view restored at start-up differs from the hello: resuming", "version", out.Version)
		return out, errResume
	}
	if out.Behind == nil {
		s.refusals.handled()
		return out, nil
	}
	b := out.Behind
	if !s.refusals.accept(time.Now()) {
		s.log.Error("update refused: behind what this node applied; trying another control plane",
			"control_plane", s.target, "version", b.Version, "control_plane_freshness", b.Got.String(), "node_freshness", b.Held.String(),
			"refusing_for", time.Since(s.refusals.since).Round(time.Millisecond), "accept_after", s.refusals.acceptAfter)
		err := fmt.Errorf("refused update from %s: %w", s.target, b)
		s.agent.SetError(err)
		return out, err
	}
	s.log.Error("ACCEPTING AN UPDATE BEHIND WHAT THIS NODE APPLIED: every control plane has been behind since the first refusal; the cluster's data went back (etcd restored from a backup?)",
		"control_plane", s.target, "version", b.Version, "control_plane_freshness", b.Got.String(), "node_freshness", b.Held.String(),
		"refusing_for", time.Since(s.refusals.since).Round(time.Millisecond))
	s.refusals.handled()
	return s.agent.HandleBehind(u), nil
}

// recvErr returns the stream's real status after Send failed with io.EOF.
func recvErr(stream grpc.BidiStreamingClient[doormanv1.SyncRequest, doormanv1.SyncResponse], sendErr error) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return sendErr
}

func (s *session) logOutcome(out agent.Outcome) {
	if out.ApplyErr != nil {
		s.log.Warn("apply failed, full sync", "version", out.Version, "error", out.ApplyErr)
	}
	if out.Err != nil {
		s.log.Warn("update rejected", "version", out.Version, "error", out.Err)
		return
	}
	if out.Warning != nil {
		s.log.Warn("update applied with errors", "version", out.Version, "not_programmed", out.Reply.GetAck().GetNotProgrammed(), "error", out.Warning)
	}
	s.log.Debug("update applied", "version", out.Version, "changes", out.Changes, "ops", out.Ops, "full_sync", out.Synced)
}
