package echo

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// Flow is one long-lived flow to an echo server (or to a Service in front
// of echo servers): a TCP Session or a connected UDP socket. Every Ask goes
// over the same five-tuple, to see which backend an established flow keeps.
type Flow interface {
	Ask(ctx context.Context, request string) (string, error)
	Close() error
}

// OpenFlow opens a flow to addr over proto: "tcp" takes an HTTP connection
// over (see Server's /session), "udp" connects a UDP socket.
func OpenFlow(ctx context.Context, dial Dialer, proto, addr string) (Flow, error) {
	switch strings.ToLower(proto) {
	case "tcp":
		return OpenSession(ctx, dial, addr)
	case "udp":
		return OpenUDPFlow(ctx, dial, addr)
	default:
		return nil, fmt.Errorf("flow to %s: unsupported protocol %q", addr, proto)
	}
}

// UDPFlow is one connected UDP socket: every datagram is the same flow.
type UDPFlow struct {
	conn net.Conn
}

// OpenUDPFlow connects a UDP socket to addr.
func OpenUDPFlow(ctx context.Context, dial Dialer, addr string) (*UDPFlow, error) {
	conn, err := dial.orDefault()(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udp flow to %s: %w", addr, err)
	}
	return &UDPFlow{conn: conn}, nil
}

// Ask sends one datagram and waits for the answer (one second unless ctx
// ends earlier).
func (f *UDPFlow) Ask(ctx context.Context, request string) (string, error) {
	dl := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = f.conn.SetDeadline(dl)
	if _, err := f.conn.Write([]byte(request)); err != nil {
		return "", fmt.Errorf("udp flow %s: write: %w", f.conn.LocalAddr(), err)
	}
	buf := make([]byte, 2048)
	n, err := f.conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("udp flow %s: read: %w", f.conn.LocalAddr(), err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

// LocalAddr is the client side of the flow.
func (f *UDPFlow) LocalAddr() net.Addr { return f.conn.LocalAddr() }

// Close ends the flow.
func (f *UDPFlow) Close() error { return f.conn.Close() }
