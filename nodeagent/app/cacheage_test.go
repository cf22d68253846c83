package app

import (
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/cache"
	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// cachedView has a first agent program one full view into the cache at
// path, and stops it.
func cachedView(t *testing.T, path string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp := serveControlPlane(t, lis)
	run := startAgent(t, testnet.NewNS(t, "agent"), path, lis.Addr().String())
	receive(t, cp.hellos, "hello")
	view := entries(t)
	cp.updates <- &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)}
	if r := receive(t, cp.replies, "ack"); r.GetAck().GetVersion() != 1 {
		t.Fatalf("reply %v, want an ack of version 1", r)
	}
	run.stop(t)
}

// closedAddr is a loopback address nothing listens on: a control plane
// that is down.
func closedAddr(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// TestTooOldCacheNotProgrammed: a node that boots (a fresh kernel) with a
// cached view older than MaxCacheAge and no control plane programs
// nothing, stays unready, and says why in its log and Inspect; a fresh
// enough cache is programmed.
func TestTooOldCacheNotProgrammed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	cachedView(t, path)
	time.Sleep(50 * time.Millisecond)

	ns := testnet.NewNS(t, "boot")
	run := startAgentWith(t, ns, path, func(c *Config) {
		c.ControlPlanes = []string{closedAddr(t)}
		c.MaxCacheAge = 10 * time.Millisecond
	})
	run.waitHealth(t, http.StatusServiceUnavailable)
	time.Sleep(300 * time.Millisecond)
	run.waitHealth(t, http.StatusServiceUnavailable)
	if line := logLine(run.logs.String(), "cached view too old to program"); !strings.Contains(line, "max-cache-age") {
		t.Errorf("no log line saying the cache is too old; logs:\n%s", run.logs.String())
	}
	if logLine(run.logs.String(), "cached view programmed") != "" {
		t.Errorf("the too-old view was programmed; logs:\n%s", run.logs.String())
	}
	st := run.getState(t)
	if st.GetVersion() != 0 || st.GetKernelReady() || !strings.Contains(st.GetLastError(), "waiting for a control plane") {
		t.Errorf("state: version %d, kernel ready %v, last error %q; want 0, false, waiting for a control plane", st.GetVersion(), st.GetKernelReady(), st.GetLastError())
	}
	if maps := kernelTable(t, ns).GetMaps(); len(maps) != 0 {
		t.Errorf("kernel programmed from a too-old cache: %v", maps)
	}
	run.stop(t)

	// A fresh cache is programmed at once.
	cachedView(t, path)
	fresh := startAgentWith(t, testnet.NewNS(t, "boot"), path, func(c *Config) {
		c.ControlPlanes = []string{closedAddr(t)}
		c.MaxCacheAge = time.Hour
	})
	fresh.waitHealth(t, http.StatusOK)
}

// TestFreshView is the age rule alone.
func TestFreshView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	view := entries(t)
	if err := c.Replace(3, map[string]*doormanv1.Entry{view[0].Key: view[0]}); err != nil {
		t.Fatal(err)
	}
	restored := func() *state.View {
		v, err := state.Restore(3, view[:1])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	confirmed, err := c.Confirmed()
	if err != nil || confirmed.IsZero() {
		t.Fatalf("confirmed %v, %v", confirmed, err)
	}
	for _, tc := range []struct {
		name    string
		maxAge  time.Duration
		age     time.Duration
		wantOld bool
	}{
		{"no limit", 0, 1000 * time.Hour, false},
		{"within", 24 * time.Hour, 23 * time.Hour, false},
		{"just at", 24 * time.Hour, 24 * time.Hour, false},
		{"over", 24 * time.Hour, 25 * time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, tooOld, err := freshView(c, restored(), tc.maxAge, confirmed.Add(tc.age))
			if err != nil {
				t.Fatal(err)
			}
			if (tooOld != nil) != tc.wantOld {
				t.Fatalf("too old: %v, want %v", tooOld, tc.wantOld)
			}
			if want := uint64(3); tc.wantOld {
				if got.Version() != 0 {
					t.Errorf("view version %d, want an empty view", got.Version())
				}
			} else if got.Version() != want {
				t.Errorf("view version %d, want %d", got.Version(), want)
			}
		})
	}
	if s, err := c.Load(); err != nil || s.Version != 0 {
		t.Errorf("after a too-old view: cache %v, %v; want it cleared", s, err)
	}
}
