package conntrack

import (
	"fmt"
	"net"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
)

// Options configure a Cleaner.
type Options struct {
	// NetNSPath is the network namespace whose conntrack table is cleaned:
	// "" for the current one.
	NetNSPath string
}

// Cleaner deletes stale UDP conntrack entries in one network namespace.
type Cleaner struct {
	log    hclog.Logger
	handle *netlink.Handle
	ns     netns.NsHandle
}

// New opens a netlink handle in the namespace of opts.
func New(log hclog.Logger, opts Options) (*Cleaner, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Cleaner{log: log.Named("conntrack"), ns: netns.None()}
	var err error
	if opts.NetNSPath != "" {
		c.ns, err = netns.GetFromPath(opts.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", opts.NetNSPath, err)
		}
		c.handle, err = netlink.NewHandleAt(c.ns, unix.NETLINK_NETFILTER)
	} else {
		c.handle, err = netlink.NewHandle(unix.NETLINK_NETFILTER)
	}
	if err != nil {
		if c.ns.IsOpen() {
			_ = c.ns.Close()
		}
		return nil, fmt.Errorf("open conntrack netlink: %w", err)
	}
	return c, nil
}

// Close releases the netlink handle.
func (c *Cleaner) Close() error {
	c.handle.Close()
	if c.ns.IsOpen() {
		return c.ns.Close()
	}
	return nil
}

// Clean deletes the UDP conntrack entries the changes (of a committed
// Apply) made stale. The agent calls it after Apply succeeded; an error is
// worth a log line, not a Nack (the kernel's rules are right).
func (c *Cleaner) Clean(changes []dataplane.Change) error {
	_, err := c.clean(changes)
	return err
}

// clean is Clean returning how many entries it deleted.
func (c *Cleaner) clean(changes []dataplane.Change) (int, error) {
	targets := Plan(changes)
	if len(targets) == 0 {
		return 0, nil
	}
	var v4, v6 []netlink.CustomConntrackFilter
	for _, t := range targets {
		f, err := filter(t)
		if err != nil {
			return 0, fmt.Errorf("conntrack filter for %v: %w", t, err)
		}
		if t.IPv6 {
			v6 = append(v6, f)
		} else {
			v4 = append(v4, f)
		}
	}
	total := 0
	for _, fam := range []struct {
		family  netlink.InetFamily
		filters []netlink.CustomConntrackFilter
	}{{unix.AF_INET, v4}, {unix.AF_INET6, v6}} {
		if len(fam.filters) == 0 {
			continue
		}
		n, err := c.handle.ConntrackDeleteFilters(netlink.ConntrackTable, fam.family, fam.filters...)
		total += int(n)
		if err != nil {
			return total, fmt.Errorf("delete conntrack entries: %w", err)
		}
	}
	c.log.Debug("cleaned conntrack", "targets", len(targets), "deleted", total)
	return total, nil
}

// filter is the netlink filter for one target.
func filter(t Target) (netlink.CustomConntrackFilter, error) {
	f := &netlink.ConntrackFilter{}
	if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
		return nil, err
	}
	if err := f.AddPort(netlink.ConntrackOrigDstPort, t.Port); err != nil {
		return nil, err
	}
	if t.Frontend.IsValid() {
		if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(t.Frontend.AsSlice())); err != nil {
			return nil, err
		}
	}
	if !t.Endpoint.IsValid() {
		return f, nil
	}
	if err := f.AddIP(netlink.ConntrackReplySrcIP, net.IP(t.Endpoint.Addr().AsSlice())); err != nil {
		return nil, err
	}
	return replySrcPortFilter{ConntrackFilter: f, port: t.Endpoint.Port()}, nil
}

// replySrcPortFilter adds the reply's source port (the endpoint's port)
// to a ConntrackFilter, which has no such field: an endpoint whose target
// port changed keeps its address, and only its old port's entries go.
type replySrcPortFilter struct {
	*netlink.ConntrackFilter
	port uint16
}

func (f replySrcPortFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return flow.Reverse.SrcPort == f.port && f.ConntrackFilter.MatchConntrackFlow(flow)
}
