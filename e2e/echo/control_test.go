package echo

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

func TestControl(t *testing.T) {
	_, tcpAddr, udpAddr := serveLoopback(t, "pod-a")
	ctl := NewControl(true)
	t.Cleanup(func() { _ = ctl.Close() })
	hs := httptest.NewServer(ctl.Handler())
	t.Cleanup(hs.Close)

	get := func(t *testing.T, path string, q url.Values) (int, string) {
		t.Helper()
		resp, err := http.Get(hs.URL + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(bytes.TrimSpace(body))
	}
	result := func(t *testing.T, path string, q url.Values) Result {
		t.Helper()
		code, body := get(t, path, q)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		var r Result
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("%s: %q: %v", path, body, err)
		}
		return r
	}

	t.Run("readiness switch", func(t *testing.T) {
		for _, tc := range []struct {
			set  string
			want int
		}{{"", http.StatusOK}, {"false", http.StatusServiceUnavailable}, {"true", http.StatusOK}} {
			if tc.set != "" {
				if code, body := get(t, "/ready", url.Values{"set": {tc.set}}); code != http.StatusOK {
					t.Fatalf("/ready?set=%s: %d %s", tc.set, code, body)
				}
			}
			if code, _ := get(t, "/readyz", nil); code != tc.want {
				t.Errorf("/readyz after set=%q: %d, want %d", tc.set, code, tc.want)
			}
		}
		if code, _ := get(t, "/ready", url.Values{"set": {"maybe"}}); code != http.StatusBadRequest {
			t.Errorf("/ready?set=maybe: %d, want %d", code, http.StatusBadRequest)
		}
	})
	t.Run("ask", func(t *testing.T) {
		for _, tc := range []struct{ proto, addr string }{{"tcp", tcpAddr}, {"udp", udpAddr}} {
			r := result(t, "/ask", url.Values{"proto": {tc.proto}, "addr": {tc.addr}, "request": {"hostname"}})
			if r.Answer != "pod-a" || r.Err() != nil {
				t.Errorf("ask %s: %+v, want pod-a", tc.proto, r)
			}
		}
	})
	t.Run("refused", func(t *testing.T) {
		// A port nobody listens on: the listener is closed again.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		_ = l.Close()
		r := result(t, "/ask", url.Values{"proto": {"tcp"}, "addr": {dead}, "request": {"hostname"}, "timeout": {"1s"}})
		err = r.Err()
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("ask a closed port: %+v, want refused", r)
		}
		if took, ok := Took(err); !ok || took != r.Took {
			t.Errorf("Took(%v) = %v, %t; want %v", err, took, ok, r.Took)
		}
	})
	t.Run("flows keep their five-tuple", func(t *testing.T) {
		for _, tc := range []struct{ proto, addr string }{{"tcp", tcpAddr}, {"udp", udpAddr}} {
			code, id := get(t, "/flow/open", url.Values{"proto": {tc.proto}, "addr": {tc.addr}})
			if code != http.StatusOK {
				t.Fatalf("open %s flow: %d %s", tc.proto, code, id)
			}
			first := result(t, "/flow/ask", url.Values{"id": {id}, "request": {"clientip"}})
			second := result(t, "/flow/ask", url.Values{"id": {id}, "request": {"clientip"}})
			if first.Err() != nil || first.Answer == "" || first.Answer != second.Answer {
				t.Errorf("%s flow: client %+v then %+v, want one address twice", tc.proto, first, second)
			}
			if code, body := get(t, "/flow/close", url.Values{"id": {id}}); code != http.StatusOK {
				t.Errorf("close %s flow: %d %s", tc.proto, code, body)
			}
			if code, _ := get(t, "/flow/ask", url.Values{"id": {id}, "request": {"hostname"}}); code != http.StatusNotFound {
				t.Errorf("ask a closed %s flow: %d, want %d", tc.proto, code, http.StatusNotFound)
			}
		}
	})
	t.Run("unary forwarded untouched", func(t *testing.T) {
		gs := grpc.NewServer()
		hsrv := health.NewServer()
		hsrv.SetServingStatus("doorman", healthpb.HealthCheckResponse_NOT_SERVING)
		healthpb.RegisterHealthServer(gs, hsrv)
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = gs.Serve(gl) }()
		t.Cleanup(gs.Stop)
		req, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: "doorman"})
		if err != nil {
			t.Fatal(err)
		}
		q := url.Values{"addr": {gl.Addr().String()}, "method": {"/grpc.health.v1.Health/Check"}}
		resp, err := http.Post(hs.URL+"/unary?"+q.Encode(), "application/octet-stream", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("unary: %d %s", resp.StatusCode, body)
		}
		var got healthpb.HealthCheckResponse
		if err := proto.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if got.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("forwarded health check: %v, want NOT_SERVING", got.GetStatus())
		}
		q.Set("method", "/grpc.health.v1.Health/Nope")
		resp2, err := http.Post(hs.URL+"/unary?"+q.Encode(), "application/octet-stream", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp2.Body.Close()
		if resp2.StatusCode != http.StatusBadGateway {
			t.Errorf("unknown method: %d, want %d", resp2.StatusCode, http.StatusBadGateway)
		}
	})
}
