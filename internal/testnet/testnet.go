package testnet

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/internal/netnsdir"
)

// nsDir is where named network namespaces are bind-mounted (as by
// `ip netns add`), so `ip netns exec NAME …` works while a test runs.
const nsDir = netnsdir.Dir

// prepareDir prepares nsDir once per process (see netnsdir).
var prepareDir = sync.OnceValue(netnsdir.Prepare)

// RequireRoot skips the test unless it runs as root, which creating network
// namespaces and programming nftables needs.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test skipped: needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) to create network namespaces; run `go test` as root")
	}
}

// NS is a named network namespace created for one test.
type NS struct {
	// Name is the namespace's name, unique per test: `ip netns exec Name …`.
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// Path is the namespace's bind mount, e.g. for dataplane.Options.NetNSPath.
func (n *NS) Path() string { return filepath.Join(nsDir, n.Name) }

// FD is a file descriptor referring to the namespace, valid until cleanup.
func (n *NS) FD() int { return int(n.handle) }

// Netlink is a netlink handle operating inside the namespace.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// NewNS creates a network namespace named "<prefix>-<random>" with its
// loopback up, and removes it when the test ends.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	if err := prepareDir(); err != nil {
		t.Fatalf("testnet: %v", err)
	}
	name := prefix + "-" + randomHex(4)
	var handle netns.NsHandle
	err := onFreshThread(func() error {
		// NewNamed moves this thread into the new namespace; the thread is
		// discarded afterwards (onFreshThread never unlocks it).
		h, err := netns.NewNamed(name)
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
		handle = h
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("namespace %s: find lo: %w", name, err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("namespace %s: set lo up: %w", name, err)
		}
		// Addresses of test interfaces are usable at once: no duplicate
		// address detection, also for IPv6 link-local addresses. Forwarding
		// starts off whatever the root namespace has: a new namespace may
		// inherit it (net.core.devconf_inherit_init_net), and a Docker
		// engine on the machine turns it on there. Tests that route call
		// EnableForwarding.
		for _, p := range []string{
			"net/ipv6/conf/default/accept_dad", "net/ipv6/conf/all/accept_dad",
			"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
		} {
			if err := os.WriteFile(filepath.Join("/proc/sys", p), []byte("0"), 0o644); err != nil {
				return fmt.Errorf("namespace %s: sysctl %s: %w", name, p, err)
			}
		}
		return nil
	})
	if err != nil {
		if handle.IsOpen() {
			_ = handle.Close()
			_ = netns.DeleteNamed(name)
		}
		t.Fatalf("testnet: %v", err)
	}
	nl, err := netlink.NewHandleAt(handle)
	if err != nil {
		_ = handle.Close()
		_ = netns.DeleteNamed(name)
		t.Fatalf("testnet: netlink handle in %s: %v", name, err)
	}
	n := &NS{Name: name, handle: handle, nl: nl}
	t.Cleanup(func() {
		n.nl.Close()
		_ = n.handle.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("testnet: delete namespace %s: %v", name, err)
		}
	})
	return n
}

// onFreshThread runs fn on a new goroutine locked to its OS thread and never
// unlocks it: when the goroutine ends the runtime discards the thread, so a
// namespace switch made by fn can never leak into other goroutines.
func onFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// Do runs fn with the calling thread inside the namespace. Sockets created by
// fn stay in the namespace after Do returns.
func (n *NS) Do(fn func() error) error {
	return onFreshThread(func() error {
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("enter namespace %s: %w", n.Name, err)
		}
		return fn()
	})
}

// Link creates a veth pair between a and b, assigns the addresses (CIDR
// notation, IPv4 or IPv6) to each end and sets both ends up. It returns the
// interface names in a and in b. The pair disappears with the namespaces.
func Link(t testing.TB, a *NS, aAddrs []string, b *NS, bAddrs []string) (aIf, bIf string) {
	t.Helper()
	suffix := randomHex(3)
	aIf, bIf = "va"+suffix, "vb"+suffix
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aIf},
		PeerName:      bIf,
		PeerNamespace: netlink.NsFd(b.FD()),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		t.Fatalf("testnet: add veth %s(%s)–%s(%s): %v", aIf, a.Name, bIf, b.Name, err)
	}
	for _, side := range []struct {
		ns    *NS
		name  string
		addrs []string
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		side.ns.AddAddr(t, side.name, side.addrs...)
		link, err := side.ns.nl.LinkByName(side.name)
		if err != nil {
			t.Fatalf("testnet: find %s in %s: %v", side.name, side.ns.Name, err)
		}
		if err := side.ns.nl.LinkSetUp(link); err != nil {
			t.Fatalf("testnet: set %s up in %s: %v", side.name, side.ns.Name, err)
		}
	}
	a.waitOperUp(t, aIf)
	b.waitOperUp(t, bIf)
	a.waitSolicitedNode(t, aIf, aAddrs)
	b.waitSolicitedNode(t, bIf, bAddrs)
	return aIf, bIf
}

// waitSolicitedNode waits until the interface has joined the
// solicited-node multicast group of each IPv6 address among addrs. The
// kernel joins them in a work queue after the link comes up; until then
// the interface ignores neighbor solicitations for the address, and its
// peer's first packet to it waits for the next solicitation, a second
// later.
func (n *NS) waitSolicitedNode(t testing.TB, ifname string, addrs []string) {
	t.Helper()
	var groups []string
	for _, s := range addrs {
		p, err := netip.ParsePrefix(s)
		if err != nil || !p.Addr().Is6() {
			continue
		}
		a := p.Addr().As16()
		groups = append(groups, fmt.Sprintf("ff0200000000000000000001ff%02x%02x%02x", a[13], a[14], a[15]))
	}
	if len(groups) == 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var joined []byte
		if err := n.Do(func() error {
			var err error
			joined, err = os.ReadFile("/proc/thread-self/net/igmp6")
			return err
		}); err != nil {
			t.Fatalf("testnet: multicast groups of %s: %v", n.Name, err)
		}
		missing := ""
		for _, g := range groups {
			if !hasGroup(string(joined), ifname, g) {
				missing = g
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: %s in %s has not joined %s after 5s", ifname, n.Name, missing)
		}
		time.Sleep(time.Millisecond)
	}
}

// hasGroup reports whether igmp6, /proc/net/igmp6's text, lists the group
// (32 hex digits) on the interface.
func hasGroup(igmp6, ifname, group string) bool {
	for line := range strings.Lines(igmp6) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == ifname && f[2] == group {
			return true
		}
	}
	return false
}

// waitOperUp waits until the kernel reports the interface operationally up.
// Until then (the link watcher runs up to a second late) the device drops
// every packet, which would cost the first connection of a test a SYN
// retransmission.
func (n *NS) waitOperUp(t testing.TB, ifname string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		link, err := n.nl.LinkByName(ifname)
		if err != nil {
			t.Fatalf("testnet: find %s in %s: %v", ifname, n.Name, err)
		}
		if link.Attrs().OperState == netlink.OperUp {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: %s in %s not up after 5s (state %s)", ifname, n.Name, link.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// AddDummy creates a dummy interface holding the addresses, e.g. a node
// address that no veth carries.
func (n *NS) AddDummy(t testing.TB, addrs ...string) string {
	t.Helper()
	name := "dm" + randomHex(3)
	if err := n.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
		t.Fatalf("testnet: add dummy in %s: %v", n.Name, err)
	}
	n.AddAddr(t, name, addrs...)
	link, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("testnet: find %s in %s: %v", name, n.Name, err)
	}
	if err := n.nl.LinkSetUp(link); err != nil {
		t.Fatalf("testnet: set %s up in %s: %v", name, n.Name, err)
	}
	return name
}

// AddAddr assigns addresses (CIDR notation) to an interface. IPv6 addresses
// skip duplicate address detection so they are usable at once.
func (n *NS) AddAddr(t testing.TB, ifname string, addrs ...string) {
	t.Helper()
	link, err := n.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("testnet: find %s in %s: %v", ifname, n.Name, err)
	}
	for _, s := range addrs {
		addr, err := netlink.ParseAddr(s)
		if err != nil {
			t.Fatalf("testnet: address %q: %v", s, err)
		}
		if addr.IP.To4() == nil {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := n.nl.AddrAdd(link, addr); err != nil {
			t.Fatalf("testnet: add %s to %s in %s: %v", s, ifname, n.Name, err)
		}
	}
}

// AddRoute adds a route to dst ("default" or a CIDR) via the gateway
// address. The family follows the gateway.
func (n *NS) AddRoute(t testing.TB, dst, via string) {
	t.Helper()
	gw := net.ParseIP(via)
	if gw == nil {
		t.Fatalf("testnet: route via %q: not an IP address", via)
	}
	route := &netlink.Route{Gw: gw, Dst: parseDst(t, dst, gw.To4() != nil)}
	if err := n.nl.RouteAdd(route); err != nil {
		t.Fatalf("testnet: route %s via %s in %s: %v", dst, via, n.Name, err)
	}
}

// AddRouteDev adds a route to dst ("default" or a CIDR) out of an interface
// without a gateway; ipv6 selects the family of "default".
func (n *NS) AddRouteDev(t testing.TB, dst, ifname string, ipv6 bool) {
	t.Helper()
	link, err := n.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("testnet: find %s in %s: %v", ifname, n.Name, err)
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: parseDst(t, dst, !ipv6)}
	if err := n.nl.RouteAdd(route); err != nil {
		t.Fatalf("testnet: route %s dev %s in %s: %v", dst, ifname, n.Name, err)
	}
}

func parseDst(t testing.TB, dst string, ipv4 bool) *net.IPNet {
	t.Helper()
	if dst == "default" {
		if ipv4 {
			return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		}
		return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	_, ipnet, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatalf("testnet: route destination %q: %v", dst, err)
	}
	return ipnet
}

// EnableForwarding turns on IPv4 and IPv6 forwarding in the namespace.
func (n *NS) EnableForwarding(t testing.TB) {
	t.Helper()
	n.Sysctl(t, "net/ipv4/ip_forward", "1")
	n.Sysctl(t, "net/ipv6/conf/all/forwarding", "1")
}

// Sysctl writes a value under /proc/sys (path like "net/ipv4/ip_forward")
// inside the namespace.
func (n *NS) Sysctl(t testing.TB, path, value string) {
	t.Helper()
	err := n.Do(func() error {
		// /proc/sys/net shows the namespace of the thread that opens it.
		return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("testnet: sysctl %s=%s in %s: %v", path, value, n.Name, err)
	}
}

// ReadSysctl reads a value under /proc/sys (path like
// "net/ipv4/ip_forward") inside the namespace, without the trailing
// newline.
func (n *NS) ReadSysctl(t testing.TB, path string) string {
	t.Helper()
	var v string
	err := n.Do(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", path))
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		t.Fatalf("testnet: read sysctl %s in %s: %v", path, n.Name, err)
	}
	return v
}

// TCPEcho serves TCP on addr (ip:port, port 0 picks one) inside the
// namespace: every connection gets "<name> <client-ip:port>\n" and is closed.
// It returns the address it listens on; it stops when the test ends.
func (n *NS) TCPEcho(t testing.TB, name, addr string) string {
	t.Helper()
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("testnet: tcp echo %s on %s in %s: %v", name, addr, n.Name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// UDPEcho serves UDP on addr inside the namespace: every datagram is
// answered with "<name> <client-ip:port>\n". It returns the address it
// listens on; it stops when the test ends.
func (n *NS) UDPEcho(t testing.TB, name, addr string) string {
	t.Helper()
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("testnet: udp echo %s on %s in %s: %v", name, addr, n.Name, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // socket closed
			}
			_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %s\n", name, from), from)
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		wg.Wait()
	})
	return pc.LocalAddr().String()
}

// DialTCP connects from the namespace to addr and returns the line the
// server sent, without its newline. The whole exchange is bounded by
// timeout. A refused connection returns an error matching
// syscall.ECONNREFUSED; a silent drop returns a timeout error.
func (n *NS) DialTCP(addr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{Deadline: deadline}).Dial("tcp", addr)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("dial tcp %s from %s: %w", addr, n.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from tcp %s in %s: %w", addr, n.Name, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// DialUDP sends one datagram from the namespace to addr and returns the
// answer, without its newline, waiting at most timeout.
func (n *NS) DialUDP(addr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{Deadline: deadline}).Dial("udp", addr)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("dial udp %s from %s: %w", addr, n.Name, err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", fmt.Errorf("send udp %s from %s: %w", addr, n.Name, err)
	}
	buf := make([]byte, 1500)
	m, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("read udp %s in %s: %w", addr, n.Name, err)
	}
	return strings.TrimSuffix(string(buf[:m]), "\n"), nil
}

// IsTimeout reports whether err is a timeout (a silently dropped packet).
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
