package echo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Server answers on the listeners it was given until Close.
type Server struct {
	name string

	mu      sync.Mutex
	closers []io.Closer
	wg      sync.WaitGroup
}

// NewServer returns a server answering with name.
func NewServer(name string) *Server { return &Server{name: name} }

// ServeTCP serves HTTP on ln in the background.
func (s *Server) ServeTCP(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, s.name)
	})
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RemoteAddr)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/session", s.session)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// Keep-alives off: every request is a new connection, so every call
	// through a Service picks an endpoint afresh.
	srv.SetKeepAlivesEnabled(false)
	s.track(srv)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
}

// ServeUDP answers datagrams on pc in the background.
func (s *Server) ServeUDP(pc net.PacketConn) {
	s.track(pc)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply := answerUDP(s.name, strings.TrimSpace(string(buf[:n])), addr)
			_, _ = pc.WriteTo([]byte(reply), addr)
		}
	}()
}

// session takes the connection over and answers one request per line
// ("hostname", "clientip", "echo …") until the client closes it: one
// long-lived TCP flow, to see which backend an established connection
// keeps.
func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot take the connection over", http.StatusInternalServerError)
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	s.track(conn)
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	if _, err := rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo-session\r\nConnection: Upgrade\r\n\r\n"); err != nil {
		return
	}
	if err := rw.Flush(); err != nil {
		return
	}
	for {
		line, err := rw.ReadString('\n')
		if err != nil {
			return
		}
		reply := answerUDP(s.name, strings.TrimSpace(line), conn.RemoteAddr())
		if _, err := rw.WriteString(reply + "\n"); err != nil {
			return
		}
		if err := rw.Flush(); err != nil {
			return
		}
	}
}

func answerUDP(name, req string, from net.Addr) string {
	switch {
	case req == "hostname":
		return name
	case req == "clientip":
		return from.String()
	case strings.HasPrefix(req, "echo "):
		return strings.TrimPrefix(req, "echo ")
	default:
		return "unknown request " + req
	}
}

func (s *Server) track(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closers = append(s.closers, c)
}

// Close stops every listener and waits for the serving goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Dialer opens a connection; net.Dialer.DialContext is one, a dialer bound
// to a network namespace another.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// orDefault is d, or a plain net.Dialer's DialContext when d is nil.
func (d Dialer) orDefault() Dialer {
	if d != nil {
		return d
	}
	var nd net.Dialer
	return nd.DialContext
}

// Ask sends request ("hostname" or "clientip") to addr over proto ("tcp"
// means HTTP, "udp" a datagram) on a fresh connection and returns the
// answer.
func Ask(ctx context.Context, dial Dialer, proto, addr, request string) (string, error) {
	dial = dial.orDefault()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	switch strings.ToLower(proto) {
	case "tcp":
		return askHTTP(ctx, dial, addr, request)
	case "udp":
		return askUDP(ctx, dial, addr, request)
	default:
		return "", fmt.Errorf("ask %s: unsupported protocol %q", addr, proto)
	}
}

func askHTTP(ctx context.Context, dial Dialer, addr, request string) (string, error) {
	tr := &http.Transport{
		DialContext:       dial,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/"+request, nil)
	if err != nil {
		return "", fmt.Errorf("ask %s: %w", addr, err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("ask %s over http: %w", addr, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("ask %s over http: read: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ask %s over http: status %s", addr, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// Session is one long-lived TCP connection to an echo server (or to a
// Service in front of echo servers): every Ask goes over the same flow.
type Session struct {
	conn net.Conn
	rd   *bufio.Reader
}

// OpenSession connects to addr over TCP and takes the connection over for
// line requests (see Server's /session).
func OpenSession(ctx context.Context, dial Dialer, addr string) (*Session, error) {
	conn, err := dial.orDefault()(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("session to %s: %w", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "GET /session HTTP/1.1\r\nHost: "+addr+"\r\nConnection: Upgrade\r\nUpgrade: echo-session\r\n\r\n"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session to %s: %w", addr, err)
	}
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("session to %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		return nil, fmt.Errorf("session to %s: status %s", addr, resp.Status)
	}
	_ = conn.SetDeadline(time.Time{})
	return &Session{conn: conn, rd: rd}, nil
}

// Ask sends one request over the session's connection and returns the
// answer.
func (s *Session) Ask(ctx context.Context, request string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	dl, _ := ctx.Deadline()
	_ = s.conn.SetDeadline(dl)
	if _, err := io.WriteString(s.conn, request+"\n"); err != nil {
		return "", fmt.Errorf("session ask: %w", err)
	}
	line, err := s.rd.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("session ask: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// LocalAddr is the client side of the session's flow.
func (s *Session) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// Close ends the session.
func (s *Session) Close() error { return s.conn.Close() }

func askUDP(ctx context.Context, dial Dialer, addr, request string) (string, error) {
	conn, err := dial(ctx, "udp", addr)
	if err != nil {
		return "", fmt.Errorf("ask %s over udp: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte(request)); err != nil {
		return "", fmt.Errorf("ask %s over udp: write: %w", addr, err)
	}
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return "", fmt.Errorf("ask %s over udp: read: %w", addr, err)
	}
	return strings.TrimSpace(string(buf[:n])), nil
}
