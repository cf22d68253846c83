package conntrack

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/internal/testnet"
)

func TestSettingsWanted(t *testing.T) {
	tests := []struct {
		name    string
		s       Settings
		cpus    int
		want    []Setting
		wantErr bool
	}{
		{
			name: "kube-proxy defaults, 2 CPUs: the minimum wins",
			s:    DefaultSettings(), cpus: 2,
			want: []Setting{
				{Name: SysctlMax, Value: 131072, OnlyRaise: true},
				{Name: SysctlTCPEstablished, Value: 86400},
				{Name: SysctlTCPCloseWait, Value: 3600},
			},
		},
		{
			name: "kube-proxy defaults, 16 CPUs: per core wins",
			s:    DefaultSettings(), cpus: 16,
			want: []Setting{
				{Name: SysctlMax, Value: 16 * 32768, OnlyRaise: true},
				{Name: SysctlTCPEstablished, Value: 86400},
				{Name: SysctlTCPCloseWait, Value: 3600},
			},
		},
		{
			name: "everything",
			s: Settings{MaxPerCore: 1, Min: 10, TCPEstablished: time.Minute, TCPCloseWait: 2 * time.Second,
				TCPBeLiberal: true, UDP: 30 * time.Second, UDPStream: 2 * time.Minute},
			cpus: 4,
			want: []Setting{
				{Name: SysctlMax, Value: 10, OnlyRaise: true},
				{Name: SysctlTCPEstablished, Value: 60},
				{Name: SysctlTCPCloseWait, Value: 2},
				{Name: SysctlTCPBeLiberal, Value: 1},
				{Name: SysctlUDP, Value: 30},
				{Name: SysctlUDPStream, Value: 120},
			},
		},
		{
			name: "localhost NodePorts: route_localnet, last",
			s:    Settings{TCPCloseWait: time.Hour, RouteLocalnet: true}, cpus: 2,
			want: []Setting{
				{Name: SysctlTCPCloseWait, Value: 3600},
				{Name: SysctlRouteLocalnet, Value: 1},
			},
		},
		{name: "all zero: nothing", s: Settings{}, cpus: 2},
		{name: "negative", s: Settings{TCPCloseWait: -time.Second}, cpus: 2, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Wanted(tc.cpus)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Wanted: error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Wanted (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSettingNeeds(t *testing.T) {
	raise := Setting{Name: SysctlMax, Value: 131072, OnlyRaise: true}
	exact := Setting{Name: SysctlTCPCloseWait, Value: 3600}
	for _, tc := range []struct {
		s       Setting
		current int
		want    bool
	}{
		{raise, 65536, true}, {raise, 131072, false}, {raise, 262144, false},
		{exact, 60, true}, {exact, 3600, false}, {exact, 7200, true},
	} {
		if got := tc.s.Needs(tc.current); got != tc.want {
			t.Errorf("%s=%d (want %d).Needs(%d) = %v, want %v", tc.s.Name, tc.s.Value, tc.s.Value, tc.current, got, tc.want)
		}
	}
}

func TestSettingPath(t *testing.T) {
	for name, want := range map[string]string{
		SysctlTCPCloseWait:  "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait",
		SysctlRouteLocalnet: "/proc/sys/net/ipv4/conf/all/route_localnet",
	} {
		if got := (Setting{Name: name}).path(); got != want {
			t.Errorf("Setting{Name: %q}.path() = %q, want %q", name, got, want)
		}
	}
}

// TestApplyRouteLocalnet sets route_localnet in a fresh network namespace
// only (it is per namespace) and reads it back there.
func TestApplyRouteLocalnet(t *testing.T) {
	ns := testnet.NewNS(t, "rl")
	const file = "/proc/sys/net/ipv4/conf/all/route_localnet"
	read := func() string { t.Helper(); return ns.ReadSysctl(t, strings.TrimPrefix(file, "/proc/sys/")) }
	host, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "0" {
		t.Fatalf("a fresh namespace has route_localnet=%s: the test could not tell", got)
	}
	got, err := Apply(nil, ns.Path(), 2, Settings{RouteLocalnet: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != SysctlRouteLocalnet || got[0].Err != nil || !got[0].Written {
		t.Fatalf("Apply = %+v, want route_localnet written", got)
	}
	if v := read(); v != "1" {
		t.Errorf("route_localnet in the namespace = %s, want 1", v)
	}
	if after, _ := os.ReadFile(file); string(after) != string(host) {
		t.Errorf("the caller's namespace changed: route_localnet %q, was %q", after, host)
	}
	if got, err := Apply(nil, ns.Path(), 2, Settings{}); err != nil || len(got) != 0 {
		t.Errorf("Apply without RouteLocalnet = %+v, %v; want nothing", got, err)
	}
}
