package server

import (
	"net"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Defaults of Limits.
const (
	DefaultMaxConnections        = 20000
	DefaultMaxConcurrentStreams  = 100
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
	DefaultMaxConnectionIdle     = 5 * time.Minute
	DefaultHandshakeTimeout      = 20 * time.Second
	// DefaultKeepaliveMinTime is the shortest interval between a client's
	// pings the server accepts. Agents ping every 30 s of silence, also
	// with no stream open (nodeagent/internal/stream.Keepalive): it must
	// stay below that, or the server answers their pings with GOAWAY
	// (too_many_pings).
	DefaultKeepaliveMinTime = 20 * time.Second
	// DefaultKeepaliveTime and DefaultKeepaliveTimeout: the server pings
	// a connection silent for a minute and drops it when no answer comes
	// within 20 s, so a dead agent's connection does not hold a slot.
	DefaultKeepaliveTime    = time.Minute
	DefaultKeepaliveTimeout = 20 * time.Second
)

// Limits bound what each client, and all of them together, can hold of
// the gRPC server. Zero fields take the defaults; a negative one turns
// the limit off.
type Limits struct {
	// MaxConnections caps the connections open at once (default 20,000:
	// 10,000 agents, doorman's largest scale benchmark, twice over, for
	// reconnects that overlap a closing connection and for Inspect
	// callers). Connections over the cap wait in the listen backlog.
	MaxConnections int
	// MaxConcurrentStreams caps the streams of one connection (default
	// 100; an agent opens one).
	MaxConcurrentStreams int
	// MaxConnectionAge ends a connection after this long (gRPC spreads it
	// by ±10 %), MaxConnectionAgeGrace later its streams are cut: every
	// agent authenticates again at least that often, and resumes by
	// digests (defaults 30 min and 30 s).
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// MaxConnectionIdle closes a connection with no stream open for this
	// long, pings or not (default 5 min).
	MaxConnectionIdle time.Duration
	// HandshakeTimeout bounds a new connection's TLS and HTTP/2
	// handshakes (default 20 s), so half-open connections do not hold
	// slots under MaxConnections.
	HandshakeTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *time.Duration, d time.Duration) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0 // gRPC: none
		}
	}
	def(&l.MaxConnectionAge, DefaultMaxConnectionAge)
	def(&l.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	def(&l.MaxConnectionIdle, DefaultMaxConnectionIdle)
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxConcurrentStreams == 0 {
		l.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	return l
}

// ServerOptions are the keepalive, age, idle and stream limits.
func (l Limits) ServerOptions() []grpc.ServerOption {
	l = l.withDefaults()
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: DefaultKeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     l.MaxConnectionIdle,
			MaxConnectionAge:      l.MaxConnectionAge,
			MaxConnectionAgeGrace: l.MaxConnectionAgeGrace,
			Time:                  DefaultKeepaliveTime,
			Timeout:               DefaultKeepaliveTimeout,
		}),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
	}
	if l.MaxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(l.MaxConcurrentStreams)))
	}
	return opts
}

// Listener caps the connections accepted from lis at MaxConnections.
func (l Limits) Listener(lis net.Listener) net.Listener {
	l = l.withDefaults()
	if l.MaxConnections < 0 {
		return lis
	}
	return netutil.LimitListener(lis, l.MaxConnections)
}
