package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/doorman-proxy/doorman/internal/netnsdir"
)

// netnsDir is where ip(8) keeps named network namespaces.
const netnsDir = netnsdir.Dir

func addNetNS(name string) error {
	if err := netnsdir.Prepare(); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func delNetNS(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); os.IsNotExist(err) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// listNetNS returns the named namespaces whose name starts with prefix.
func listNetNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// inNetNS runs fn on a thread switched into the named namespace. Sockets
// fn opens stay in that namespace after it returns. fn runs on a goroutine
// of its own: if the thread cannot be switched back, that goroutine ends
// still locked and the runtime discards the thread instead of reusing it.
func inNetNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer func() { _ = orig.Close() }()
		target, err := netns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: %w", name, err)
			return
		}
		defer func() { _ = target.Close() }()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", name, err)
			return // still locked: the thread dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dialerIn returns a dialer whose sockets live in the named namespace.
func dialerIn(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := inNetNS(name, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// setSysctls writes key, value pairs in order inside ns (each key with
// dots as slashes under /proc/sys), switching into it once.
func setSysctls(ns string, kv ...string) error {
	return inNetNS(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			path := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(path, []byte(kv[i+1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// noDADSysctls turn IPv6 duplicate address detection off, so addresses
// are usable at once; set in a namespace before its interfaces are made
// (Pods, the external client). Forwarding is set off explicitly: a new
// namespace may inherit it from the root namespace, where a Docker engine
// turns it on.
var noDADSysctls = []string{
	"net.ipv6.conf.all.accept_dad", "0",
	"net.ipv6.conf.default.accept_dad", "0",
	"net.ipv4.ip_forward", "0",
	"net.ipv6.conf.all.forwarding", "0",
}

// hostSysctls are set in every node and the gateway namespace before its
// interfaces are made: no duplicate address detection, forwarding in both
// families.
var hostSysctls = append(append([]string(nil), noDADSysctls...),
	"net.ipv4.ip_forward", "1",
	"net.ipv6.conf.all.forwarding", "1",
)

// nsHandle opens a netlink handle working inside the named namespace.
type nsLink struct {
	name string
	fd   netns.NsHandle
	h    *netlink.Handle
}

func openNS(name string) (*nsLink, error) {
	fd, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		_ = fd.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return &nsLink{name: name, fd: fd, h: h}, nil
}

func (n *nsLink) Close() {
	n.h.Close()
	_ = n.fd.Close()
}

func (n *nsLink) up(name string) error {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: link %s: %w", n.name, name, err)
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("%s: set %s up: %w", n.name, name, err)
	}
	return nil
}

func (n *nsLink) addAddr(name, cidr string) error {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: link %s: %w", n.name, name, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if a.IP.To4() == nil {
		a.Flags |= syscall.IFA_F_NODAD // usable at once
	}
	if err := n.h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("%s: address %s on %s: %w", n.name, cidr, name, err)
	}
	return nil
}

// route adds dst (CIDR, or "default" with gw naming the family) via gw
// (may be "") out of dev (may be "").
func (n *nsLink) route(dst, gw, dev string, scopeLink bool) error {
	r := &netlink.Route{}
	if dst != "default" {
		_, ipn, err := net.ParseCIDR(dst)
		if err != nil {
			return err
		}
		r.Dst = ipn
	}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
	}
	if dev != "" {
		l, err := n.h.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("%s: link %s: %w", n.name, dev, err)
		}
		r.LinkIndex = l.Attrs().Index
	}
	if scopeLink {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := n.h.RouteAdd(r); err != nil {
		return fmt.Errorf("%s: route %s via %q dev %q: %w", n.name, dst, gw, dev, err)
	}
	return nil
}

// veth creates a pair: local end name here (optionally enslaved to master),
// peer end peerName in namespace peer.
func (n *nsLink) veth(name, master string, peer *nsLink, peerName string) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if master != "" {
		m, err := n.h.LinkByName(master)
		if err != nil {
			return fmt.Errorf("%s: link %s: %w", n.name, master, err)
		}
		attrs.MasterIndex = m.Attrs().Index
	}
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: peerName, PeerNamespace: netlink.NsFd(peer.fd)}
	if err := n.h.LinkAdd(v); err != nil {
		return fmt.Errorf("%s: veth %s <-> %s/%s: %w", n.name, name, peer.name, peerName, err)
	}
	return n.up(name)
}

func (n *nsLink) bridge(name string) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	// No multicast snooping: IPv6 neighbour discovery reaches every port
	// whatever group reports the bridge has or has not seen.
	snooping := false
	if err := n.h.LinkAdd(&netlink.Bridge{LinkAttrs: attrs, MulticastSnooping: &snooping}); err != nil {
		return fmt.Errorf("%s: bridge %s: %w", n.name, name, err)
	}
	return n.up(name)
}
