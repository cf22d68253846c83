package cluster

import (
	"errors"
	"net"
	"sync"
)

// relay accepts TCP connections on a listener inside a node-network
// namespace and forwards each to a loopback address of the caller's
// namespace. It lets node namespaces reach the API server and the control
// plane without any address or route in the caller's namespace.
//
// A frozen relay is a blackhole: it closes nothing, but serves no new
// connection and forwards no byte until it thaws (see Freeze).
type relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	thawed chan struct{} // nil: not frozen; closed when the relay thaws
	closed chan struct{}
}

func startRelay(netnsName, listen, target string) (*relay, error) {
	var ln net.Listener
	err := inNetNS(netnsName, func() error {
		var err error
		ln, err = net.Listen("tcp", listen)
		return err
	})
	if err != nil {
		return nil, err
	}
	return serveRelay(ln, target), nil
}

// startLocalRelay is a relay listening in the caller's own namespace.
func startLocalRelay(listen, target string) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	return serveRelay(ln, target), nil
}

func serveRelay(ln net.Listener, target string) *relay {
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	r.wg.Add(1)
	go r.serve()
	return r
}

// Freeze makes the relay a blackhole: connections stay open, new ones are
// accepted but not served, and no byte is forwarded either way.
func (r *relay) Freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.thawed == nil {
		r.thawed = make(chan struct{})
	}
}

// Thaw ends Freeze: what was held back is forwarded.
func (r *relay) Thaw() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.thawed != nil {
		close(r.thawed)
		r.thawed = nil
	}
}

// wait returns once the relay is not frozen; false when it closed.
func (r *relay) wait() bool {
	r.mu.Lock()
	thawed := r.thawed
	r.mu.Unlock()
	if thawed == nil {
		return true
	}
	select {
	case <-thawed:
		return true
	case <-r.closed:
		return false
	}
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.wg.Add(1)
		go r.pipe(c)
	}
}

func (r *relay) pipe(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	r.track(c)
	defer r.untrack(c)
	if !r.wait() {
		return
	}
	u, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	defer u.Close()
	r.track(u)
	defer r.untrack(u)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		r.copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(u, c)
	go cp(c, u)
	<-done
	<-done
}

// copy forwards src to dst until either fails, holding each chunk while
// the relay is frozen.
func (r *relay) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !r.wait() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) track(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
}

func (r *relay) untrack(cs ...net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		delete(r.conns, c)
	}
}

func (r *relay) Close() {
	_ = r.ln.Close()
	r.mu.Lock()
	select {
	case <-r.closed:
	default:
		close(r.closed)
	}
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
