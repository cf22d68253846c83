package conntrack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
)

// sysctlPath is a Setting's file: a bare name under net/netfilter, one
// with a directory under net.
func sysctlPath(name string) string {
	if strings.Contains(name, "/") {
		return "/proc/sys/net/" + name
	}
	return "/proc/sys/net/netfilter/" + name
}

// sysctlIn reads and writes /proc/sys/net/netfilter/NAME in ns.
type sysctlIn struct {
	t  *testing.T
	ns *testnet.NS
}

func (s sysctlIn) read(name string) string {
	s.t.Helper()
	return s.ns.ReadSysctl(s.t, strings.TrimPrefix(sysctlPath(name), "/proc/sys/"))
}

func (s sysctlIn) write(name, v string) {
	s.t.Helper()
	if err := s.ns.Do(func() error { return os.WriteFile(sysctlPath(name), []byte(v), 0o644) }); err != nil {
		s.t.Fatal(err)
	}
}

// TestRecordAndRestore: Apply records each sysctl's value before its first
// change; a later Apply that writes again keeps that first value. Restore
// puts back those still as doorman set them, keeps the one an
// administrator changed since, deletes the record, and finds nothing the
// second time.
func TestRecordAndRestore(t *testing.T) {
	ns := testnet.NewNS(t, "ct")
	sys := sysctlIn{t, ns}
	record := filepath.Join(t.TempDir(), "doorman", conntrack.RecordFile)
	names := []string{conntrack.SysctlTCPEstablished, conntrack.SysctlTCPCloseWait, conntrack.SysctlUDP, conntrack.SysctlRouteLocalnet}
	original := map[string]string{}
	for _, n := range names {
		original[n] = sys.read(n)
	}
	if original[conntrack.SysctlTCPCloseWait] == "3600" || original[conntrack.SysctlUDP] == "31" || original[conntrack.SysctlRouteLocalnet] == "1" {
		t.Fatalf("a fresh namespace already has the values the test sets: %v", original)
	}

	s := conntrack.Settings{TCPEstablished: 24 * time.Hour, TCPCloseWait: time.Hour, UDP: 31 * time.Second, RouteLocalnet: true, Record: record}
	if _, err := conntrack.Apply(nil, ns.Path(), 2, s); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("no record after Apply: %v", err)
	}
	// A later start with another value: the record keeps the first original.
	s.TCPCloseWait = 2 * time.Hour
	if _, err := conntrack.Apply(nil, ns.Path(), 2, s); err != nil {
		t.Fatal(err)
	}
	if got := sys.read(conntrack.SysctlTCPCloseWait); got != "7200" {
		t.Fatalf("%s = %s after the second Apply, want 7200", conntrack.SysctlTCPCloseWait, got)
	}
	// An administrator changes one after doorman.
	sys.write(conntrack.SysctlUDP, "45")

	restored, err := conntrack.Restore(nil, ns.Path(), record)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	want := map[string]string{
		conntrack.SysctlTCPEstablished: original[conntrack.SysctlTCPEstablished],
		conntrack.SysctlTCPCloseWait:   original[conntrack.SysctlTCPCloseWait],
		conntrack.SysctlUDP:            "45",
		conntrack.SysctlRouteLocalnet:  original[conntrack.SysctlRouteLocalnet],
	}
	for n, v := range want {
		if got := sys.read(n); got != v {
			t.Errorf("%s = %s after Restore, want %s", n, got, v)
		}
	}
	written := 0
	for _, r := range restored {
		if r.Written {
			written++
		}
	}
	if written != 3 || len(restored) != 4 {
		t.Errorf("Restore wrote %d of %d recorded sysctls, want 3 of 4: %+v", written, len(restored), restored)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("record still there after Restore: %v", err)
	}
	again, err := conntrack.Restore(nil, ns.Path(), record)
	if err != nil || len(again) != 0 {
		t.Errorf("second Restore: %+v, %v; want nothing, no error", again, err)
	}
}

// TestApplyWithoutRecordChangesNothing: a sysctl whose original cannot be
// recorded is left as it is.
func TestApplyWithoutRecordChangesNothing(t *testing.T) {
	ns := testnet.NewNS(t, "ct")
	sys := sysctlIn{t, ns}
	// The record is written to RECORD.tmp first: a directory there
	// stops it.
	record := filepath.Join(t.TempDir(), conntrack.RecordFile)
	if err := os.MkdirAll(filepath.Join(record+".tmp", "busy"), 0o700); err != nil {
		t.Fatal(err)
	}
	before := sys.read(conntrack.SysctlTCPCloseWait)
	s := conntrack.Settings{TCPCloseWait: time.Hour, Record: record}
	got, err := conntrack.Apply(nil, ns.Path(), 2, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Err == nil || got[0].Written {
		t.Errorf("Apply = %+v, want one sysctl not written, with an error", got)
	}
	if after := sys.read(conntrack.SysctlTCPCloseWait); after != before {
		t.Errorf("%s = %s, was %s: changed without a record", conntrack.SysctlTCPCloseWait, after, before)
	}
}
