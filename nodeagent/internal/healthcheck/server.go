package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netns"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Options configure Servers.
type Options struct {
	// NetNSPath is the network namespace to listen in: "" for the current
	// one.
	NetNSPath string
	// Address to listen on with each port; "" for every address.
	Address string
}

// Servers runs one HTTP listener per health check node port.
type Servers struct {
	log  hclog.Logger
	opts Options

	mu        sync.Mutex
	listeners map[uint16]*listener
}

type listener struct {
	srv *http.Server
	mu  sync.RWMutex
	svc Service
}

// New returns Servers with no listener yet.
func New(log hclog.Logger, opts Options) *Servers {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Servers{log: log.Named("healthcheck"), opts: opts, listeners: map[uint16]*listener{}}
}

// Update makes the listeners match the view: opens the new ports, closes
// the ones no longer wanted, and updates every count. A port that cannot be
// opened (or is claimed twice) is reported in the error; the others serve.
func (s *Servers) Update(view map[string]*doormanv1.Entry) error {
	want, errs := Plan(view)
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, l := range s.listeners {
		if _, ok := want[port]; !ok {
			s.closeListener(port, l)
		}
	}
	for port, svc := range want {
		if l, ok := s.listeners[port]; ok {
			l.mu.Lock()
			l.svc = svc
			l.mu.Unlock()
			continue
		}
		l, err := s.open(port, svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("health check port %d of %s/%s: %w", port, svc.Namespace, svc.Name, err))
			continue
		}
		s.listeners[port] = l
		s.log.Info("serving health check", "port", port, "service", svc.Namespace+"/"+svc.Name)
	}
	return errors.Join(errs...)
}

// Ports returns the ports being served.
func (s *Servers) Ports() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint16, 0, len(s.listeners))
	for p := range s.listeners {
		out = append(out, p)
	}
	return out
}

// Close stops every listener.
func (s *Servers) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, l := range s.listeners {
		s.closeListener(port, l)
	}
	return nil
}

func (s *Servers) closeListener(port uint16, l *listener) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
	}
	delete(s.listeners, port)
	s.log.Info("stopped health check", "port", port)
}

func (s *Servers) open(port uint16, svc Service) (*listener, error) {
	addr := net.JoinHostPort(s.opts.Address, strconv.Itoa(int(port)))
	ln, err := listenIn(s.opts.NetNSPath, addr)
	if err != nil {
		return nil, err
	}
	l := &listener{svc: svc}
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("health check server stopped", "port", port, "error", err)
		}
	}()
	return l, nil
}

// listenIn opens a TCP listener inside the namespace at path ("" = the
// current one). The socket stays in that namespace; the thread that made
// it is discarded.
func listenIn(path, addr string) (net.Listener, error) {
	if path == "" {
		return net.Listen("tcp", addr)
	}
	type result struct {
		ln  net.Listener
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the runtime discards the thread with the
		// goroutine, so the namespace switch cannot leak.
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			done <- result{err: fmt.Errorf("open network namespace %s: %w", path, err)}
			return
		}
		defer func() { _ = ns.Close() }()
		if err := netns.Set(ns); err != nil {
			done <- result{err: fmt.Errorf("enter network namespace %s: %w", path, err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}

// response is kube-proxy's health check body.
type response struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (l *listener) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	l.mu.RLock()
	svc := l.svc
	l.mu.RUnlock()
	var body response
	body.Service.Namespace, body.Service.Name = svc.Namespace, svc.Name
	body.LocalEndpoints = svc.LocalEndpoints
	body.ServiceProxyHealthy = true
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if svc.LocalEndpoints == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	_ = json.NewEncoder(w).Encode(body)
}
