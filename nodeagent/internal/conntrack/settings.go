package conntrack

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Settings are the conntrack sysctls the agent sets once at start, as
// kube-proxy does (its --conntrack-* flags, same meanings and defaults).
// A zero field leaves its sysctl alone.
type Settings struct {
	// MaxPerCore × the number of CPUs, but at least Min, is the table
	// size nf_conntrack_max is raised to; never lowered.
	MaxPerCore int
	Min        int
	// TCPEstablished and TCPCloseWait are the idle timeouts of TCP
	// entries in those states. kube-proxy's 1 h for CLOSE_WAIT keeps a
	// half-closed connection's NAT long enough for the server to finish.
	TCPEstablished time.Duration
	TCPCloseWait   time.Duration
	// TCPBeLiberal accepts out-of-window packets instead of marking them
	// invalid (nf_conntrack_tcp_be_liberal = 1); false leaves it alone.
	TCPBeLiberal bool
	// UDP and UDPStream are the UDP entries' timeouts, unreplied and
	// replied (streams).
	UDP       time.Duration
	UDPStream time.Duration
	// RouteLocalnet sets net.ipv4.conf.all.route_localnet = 1, which
	// localhost NodePorts (--localhost-nodeports) need: the kernel then
	// routes packets from 127.0.0.1 that DNAT sent off the node. false
	// leaves it alone.
	RouteLocalnet bool
	// Record is the file where Apply records each sysctl's value before
	// its first change, for Restore ("" = none).
	Record string
}

// DefaultSettings are kube-proxy v1.36's defaults.
func DefaultSettings() Settings {
	return Settings{MaxPerCore: 32768, Min: 131072, TCPEstablished: 24 * time.Hour, TCPCloseWait: time.Hour}
}

// Sysctl names, under /proc/sys/net/netfilter.
const (
	SysctlMax            = "nf_conntrack_max"
	SysctlTCPEstablished = "nf_conntrack_tcp_timeout_established"
	SysctlTCPCloseWait   = "nf_conntrack_tcp_timeout_close_wait"
	SysctlTCPBeLiberal   = "nf_conntrack_tcp_be_liberal"
	SysctlUDP            = "nf_conntrack_udp_timeout"
	SysctlUDPStream      = "nf_conntrack_udp_timeout_stream"
	// SysctlRouteLocalnet is not a conntrack sysctl: it is named with its
	// directory, under /proc/sys/net (see Setting.path).
	SysctlRouteLocalnet = "ipv4/conf/all/route_localnet"
)

// Setting is one sysctl the settings ask for.
type Setting struct {
	Name  string
	Value int
	// OnlyRaise: write only when the current value is lower
	// (nf_conntrack_max).
	OnlyRaise bool
}

// Wanted lists the sysctls s sets on a machine with cpus CPUs, in a fixed
// order. It refuses negative values, naming the flag's field.
func (s Settings) Wanted(cpus int) ([]Setting, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxPerCore", int64(s.MaxPerCore)}, {"Min", int64(s.Min)},
		{"TCPEstablished", int64(s.TCPEstablished)}, {"TCPCloseWait", int64(s.TCPCloseWait)},
		{"UDP", int64(s.UDP)}, {"UDPStream", int64(s.UDPStream)},
	} {
		if f.v < 0 {
			return nil, fmt.Errorf("conntrack setting %s is negative", f.name)
		}
	}
	var out []Setting
	if s.MaxPerCore > 0 {
		out = append(out, Setting{Name: SysctlMax, Value: max(s.MaxPerCore*max(cpus, 1), s.Min), OnlyRaise: true})
	}
	seconds := func(name string, d time.Duration) {
		if d > 0 {
			out = append(out, Setting{Name: name, Value: int(d / time.Second)})
		}
	}
	seconds(SysctlTCPEstablished, s.TCPEstablished)
	seconds(SysctlTCPCloseWait, s.TCPCloseWait)
	if s.TCPBeLiberal {
		out = append(out, Setting{Name: SysctlTCPBeLiberal, Value: 1})
	}
	seconds(SysctlUDP, s.UDP)
	seconds(SysctlUDPStream, s.UDPStream)
	if s.RouteLocalnet {
		out = append(out, Setting{Name: SysctlRouteLocalnet, Value: 1})
	}
	return out, nil
}

// path is the sysctl's file: a bare name under /proc/sys/net/netfilter,
// a name with a directory under /proc/sys/net.
func (w Setting) path() string {
	if strings.Contains(w.Name, "/") {
		return filepath.Join(filepath.Dir(procNetfilter), w.Name)
	}
	return filepath.Join(procNetfilter, w.Name)
}

// Needs reports whether the sysctl must be written, given its current
// value.
func (w Setting) Needs(current int) bool {
	if w.OnlyRaise {
		return current < w.Value
	}
	return current != w.Value
}
