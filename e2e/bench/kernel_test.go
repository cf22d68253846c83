package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/internal/netnsdir"
)

// testNetNS creates a network namespace for one test and removes it.
func testNetNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("kernel probes need root (network namespaces): run the test as root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatal("nft not installed: make deps installs it (apt-get install -y nftables)")
	}
	if err := netnsdir.Prepare(); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("benchtest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return name
}

func nft(t *testing.T, ns, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s\n%s", err, out, script)
	}
}

// The tables below are trimmed copies of what doorman and kube-proxy
// program (see nodeagent/internal/render/testdata and kube-proxy's
// nftables proxier).
const doormanTable = `
table inet doorman {
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
	map service-endpoints { type ipv4_addr . inet_proto . inet_service . mark : ipv4_addr . inet_service; }
	chain service-2 {
		counter
	}
}
add element inet doorman service-ips { 10.96.0.10 . tcp . 80 : goto service-2, 10.96.0.11 . tcp . 80 : goto service-2 }
add element inet doorman service-endpoints { 10.96.0.10 . tcp . 80 . 0x0 : 10.244.1.2 . 8080, 10.96.0.10 . tcp . 80 . 0x1 : 10.244.1.3 . 8080 }
add element inet doorman service-endpoints { 10.96.0.11 . tcp . 80 . 0x0 : 10.244.1.2 . 8080, 10.96.0.11 . tcp . 80 . 0x1 : 10.245.0.7 . 8080 }
`

const kubeProxyTable = `
table ip kube-proxy {
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
	chain service-AAAAAAAA-bench/svc-000001/tcp/http {
		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.245.0.9 . 8080 }
	}
	chain service-BBBBBBBB-bench/svc-000002/tcp/http {
		meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.2 . 8080, 1 : 10.244.1.3 . 8080 }
	}
}
add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto service-AAAAAAAA-bench/svc-000001/tcp/http }
`

func TestKernelProbes(t *testing.T) {
	ns := testNetNS(t)
	nft(t, ns, doormanTable)
	nft(t, ns, kubeProxyTable)
	want := map[string]wanted{
		"svc-000001": {netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.245.0.9")},
		"svc-000002": {netip.MustParseAddr("10.96.0.11"), netip.MustParseAddr("10.245.0.7")},
		"svc-000003": {netip.MustParseAddr("10.96.0.12"), netip.MustParseAddr("10.245.0.200")},
		// an endpoint of svc-000002, not of this Service
		"svc-000004": {netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("10.245.0.7")},
	}
	tests := []struct {
		name       string
		open       func(string) (*nftKernel, error)
		programmed int
		present    map[string]bool
		objects    objects
	}{
		{"doorman", doormanKernel, 2, map[string]bool{"svc-000002": true}, objects{Rules: 1, Chains: 1, Elements: 6}},
		// kube-proxy: only svc-000001's chain holds 10.245.0.9.
		{"kube-proxy nftables", kubeProxyNFTKernel, 1, map[string]bool{"svc-000001": true}, objects{Rules: 2, Chains: 2, Elements: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := tt.open(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer k.close()
			got, err := k.programmed()
			if err != nil || got != tt.programmed {
				t.Errorf("programmed = %d, %v; want %d", got, err, tt.programmed)
			}
			for ip, want := range map[string]bool{"10.96.0.10": true, "10.96.0.99": false} {
				if got, err := k.dispatches(netip.MustParseAddr(ip)); err != nil || got != want {
					t.Errorf("dispatches(%s) = %v, %v; want %v", ip, got, err, want)
				}
			}
			found, err := k.present(want)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.present, found); diff != "" {
				t.Errorf("present (-want +got):\n%s", diff)
			}
			o, err := k.objects()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.objects, o); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			if err := k.reset(); err != nil {
				t.Fatal(err)
			}
			if got, _ := k.programmed(); got != 0 {
				t.Errorf("programmed after reset = %d", got)
			}
		})
	}
}

// TestWaitForCommit checks that the wait ends on the commit's event, with
// a time no earlier than the commit: the change is committed 300 ms after
// the wait starts and the poll tick is longer than the wait may last.
func TestWaitForCommit(t *testing.T) {
	ns := testNetNS(t)
	nft(t, ns, doormanTable)
	k, err := doormanKernel(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()
	g, err := watchGenerations(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	ip := netip.MustParseAddr("10.245.1.1")
	started := make(chan time.Time, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		started <- time.Now()
		cmd := exec.Command("ip", "netns", "exec", ns, "nft", "add element inet doorman service-endpoints { 10.96.0.12 . tcp . 80 . 0x0 : 10.245.1.1 . 8080 }")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("nft: %v: %s", err, out)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at, err := waitFor(ctx, g, time.Hour, func() (bool, error) {
		found, err := k.present(map[string]wanted{"x": {netip.MustParseAddr("10.96.0.12"), ip}})
		return found["x"], err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Seen by its event, not at a poll tick: the tick is an hour away,
	// past the context's deadline.
	if s := <-started; at.Before(s) {
		t.Errorf("commit time %s before the nft command started", s.Sub(at))
	}
}
