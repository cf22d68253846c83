package conntrack_test

import (
	"os"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
)

// TestApplySysctls sets the conntrack sysctls in a fresh network namespace
// and reads them back there, while the caller's namespace keeps its own.
// nf_conntrack_max is the host's alone: from another namespace it is
// read-only, so raising it is reported, not done.
func TestApplySysctls(t *testing.T) {
	ns := testnet.NewNS(t, "ct")
	read := func(name string) string { t.Helper(); return ns.ReadSysctl(t, "net/netfilter/"+name) }
	hostCloseWait, err := os.ReadFile("/proc/sys/net/netfilter/" + conntrack.SysctlTCPCloseWait)
	if err != nil {
		t.Fatalf("conntrack sysctls missing on this machine: %v", err)
	}
	if got := read(conntrack.SysctlTCPCloseWait); got == "3600" {
		t.Fatalf("a fresh namespace already has %s=3600: the test could not tell", conntrack.SysctlTCPCloseWait)
	}

	s := conntrack.Settings{MaxPerCore: 1 << 30, TCPEstablished: 24 * time.Hour, TCPCloseWait: time.Hour, UDP: 31 * time.Second}
	got, err := conntrack.Apply(nil, ns.Path(), 2, s)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]conntrack.Applied{}
	for _, a := range got {
		byName[a.Name] = a
	}
	for name, want := range map[string]string{
		conntrack.SysctlTCPEstablished: "86400",
		conntrack.SysctlTCPCloseWait:   "3600",
		conntrack.SysctlUDP:            "31",
	} {
		if a := byName[name]; a.Err != nil || !a.Written {
			t.Errorf("%s: written %v, error %v", name, a.Written, a.Err)
		}
		if v := read(name); v != want {
			t.Errorf("%s in the namespace = %s, want %s", name, v, want)
		}
	}
	if a := byName[conntrack.SysctlMax]; a.Err == nil || a.Written {
		t.Errorf("%s from a namespace: written %v, error %v; want a read-only error", conntrack.SysctlMax, a.Written, a.Err)
	}
	if after, _ := os.ReadFile("/proc/sys/net/netfilter/" + conntrack.SysctlTCPCloseWait); string(after) != string(hostCloseWait) {
		t.Errorf("the caller's namespace changed: %s %q, was %q", conntrack.SysctlTCPCloseWait, after, hostCloseWait)
	}

	// Again: nothing left to write.
	again, err := conntrack.Apply(nil, ns.Path(), 2, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range again {
		if a.Written {
			t.Errorf("second Apply wrote %s again", a.Name)
		}
	}
}
