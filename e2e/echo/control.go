package echo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Control is the HTTP endpoint that makes an echo Pod a client and a
// readiness switch, for clusters where the suite cannot enter the Pod's
// network namespace (kind: reached through the API server's Pod proxy):
//
//   - GET /readyz: 200 while ready, 503 otherwise (the readiness probe).
//   - GET /ready?set=true|false: flips what /readyz answers.
//   - GET /ask?proto=tcp|udp&addr=host:port&request=hostname|clientip[&timeout=2s]:
//     sends one request from here (Ask) and answers a Result as JSON.
//   - GET /flow/open?proto=tcp|udp&addr=host:port: opens a long-lived Flow
//     and answers its id; GET /flow/ask?id=…&request=… asks over it (a
//     Result); GET /flow/close?id=… ends it.
//   - POST /unary?addr=host:port&method=/pkg.Service/Method: one unary gRPC
//     call over plaintext to addr with the body as the serialised request;
//     the answer is the serialised response. A dialer on a node's host
//     network reaches services that listen on the node's loopback only.
type Control struct {
	ready atomic.Bool

	mu     sync.Mutex
	nextID int
	flows  map[string]Flow
}

// NewControl returns a control endpoint whose /readyz starts as ready says.
func NewControl(ready bool) *Control {
	c := &Control{flows: map[string]Flow{}}
	c.ready.Store(ready)
	return c
}

// Result is the outcome of one request sent by a Control.
type Result struct {
	Answer string `json:"answer,omitempty"`
	Error  string `json:"error,omitempty"`
	// Refused: the connection was refused (TCP RST, ICMP port unreachable).
	Refused bool `json:"refused,omitempty"`
	// Took is how long the request took where it was sent from.
	Took time.Duration `json:"took"`
}

// Err is the Result's failure as an error (nil when it succeeded).
func (r Result) Err() error {
	if r.Error == "" {
		return nil
	}
	return &RemoteError{Msg: r.Error, Refused: r.Refused, Took: r.Took}
}

// RemoteError is a request that failed where it was sent from.
type RemoteError struct {
	Msg     string
	Refused bool
	Took    time.Duration
}

func (e *RemoteError) Error() string { return e.Msg }

// Is makes a remote refusal match syscall.ECONNREFUSED, as a local one does.
func (e *RemoteError) Is(target error) bool {
	return e.Refused && errors.Is(target, syscall.ECONNREFUSED)
}

// Took is how long a failed request took where it was sent from, when
// that is known (a RemoteError).
func Took(err error) (time.Duration, bool) {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Took, true
	}
	return 0, false
}

// Handler serves the endpoints listed on Control.
func (c *Control) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		v, err := strconv.ParseBool(r.URL.Query().Get("set"))
		if err != nil {
			http.Error(w, "set must be true or false", http.StatusBadRequest)
			return
		}
		c.ready.Store(v)
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /ask", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ctx, cancel := context.WithTimeout(r.Context(), timeoutParam(q.Get("timeout")))
		defer cancel()
		start := time.Now()
		ans, err := Ask(ctx, nil, q.Get("proto"), q.Get("addr"), q.Get("request"))
		writeResult(w, ans, err, time.Since(start))
	})
	mux.HandleFunc("GET /flow/open", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		ctx, cancel := context.WithTimeout(r.Context(), timeoutParam(q.Get("timeout")))
		defer cancel()
		f, err := OpenFlow(ctx, nil, q.Get("proto"), q.Get("addr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.mu.Lock()
		c.nextID++
		id := strconv.Itoa(c.nextID)
		c.flows[id] = f
		c.mu.Unlock()
		_, _ = io.WriteString(w, id)
	})
	mux.HandleFunc("GET /flow/ask", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c.mu.Lock()
		f := c.flows[q.Get("id")]
		c.mu.Unlock()
		if f == nil {
			http.Error(w, "no flow "+q.Get("id"), http.StatusNotFound)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeoutParam(q.Get("timeout")))
		defer cancel()
		start := time.Now()
		ans, err := f.Ask(ctx, q.Get("request"))
		writeResult(w, ans, err, time.Since(start))
	})
	mux.HandleFunc("GET /flow/close", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("id")
		c.mu.Lock()
		f := c.flows[id]
		delete(c.flows, id)
		c.mu.Unlock()
		if f == nil {
			http.Error(w, "no flow "+id, http.StatusNotFound)
			return
		}
		_ = f.Close()
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /unary", c.unary)
	return mux
}

// Close ends every open flow.
func (c *Control) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, f := range c.flows {
		_ = f.Close()
		delete(c.flows, id)
	}
	return nil
}

func (c *Control) unary(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	conn, err := grpc.NewClient("passthrough:///"+q.Get("addr"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		http.Error(w, fmt.Sprintf("grpc %s: %v", q.Get("addr"), err), http.StatusBadGateway)
		return
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(r.Context(), timeoutParam(q.Get("timeout")))
	defer cancel()
	var resp []byte
	if err := conn.Invoke(ctx, q.Get("method"), &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
		http.Error(w, fmt.Sprintf("grpc %s %s: %v", q.Get("addr"), q.Get("method"), err), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(resp)
}

// rawCodec passes serialised messages through untouched: the forwarder
// needs no knowledge of the service it calls.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec: cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Name is "proto" so the server reads the bytes as the protobuf they are.
func (rawCodec) Name() string { return "proto" }

func timeoutParam(s string) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 && d <= time.Minute {
		return d
	}
	return 3 * time.Second
}

func writeResult(w http.ResponseWriter, ans string, err error, took time.Duration) {
	res := Result{Answer: ans, Took: took}
	if err != nil {
		res.Answer = ""
		res.Error = err.Error()
		res.Refused = errors.Is(err, syscall.ECONNREFUSED)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
