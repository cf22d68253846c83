package drift

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// quietSyncEntries: a Sync of a view this large runs with the monitor out
// of the events group. For every listener the kernel builds one event
// message per element a commit adds or deletes, inside the committing
// process's system call, and the monitor then decodes them all: at
// 100,000 Services (400,000 elements) that was most of a full
// programming's time. Commits made while out of the group are counted
// from the generation instead (see ownKernel.Sync).
const quietSyncEntries = 1000

// eventBuffer is the event socket's receive buffer. A full programming of a
// large view makes one event per element; when they overflow the buffer the
// kernel reports ENOBUFS and the monitor asks for a resync.
const eventBuffer = 16 << 20

// Signal is what the monitor reports to the loop.
type Signal int

const (
	// SignalForeign: a foreign commit touched doorman's table.
	SignalForeign Signal = iota + 1
	// SignalLost: events were lost.
	SignalLost
)

// Monitor watches nftables events in one network namespace.
type Monitor struct {
	log     hclog.Logger
	netns   *os.File
	events  *netlink.Conn // joined to NFNLGRP_NFTABLES
	query   *netlink.Conn // GETGEN requests
	queryMu sync.Mutex
	commits *agent.Commits
	table   string
	// events read, for tests
	received atomic.Uint64

	// seen is the run of generations whose commits the monitor saw one
	// after another, for Quiet; moved is closed and replaced each time
	// seen changes.
	seenMu sync.Mutex
	seen   seenRun
	moved  chan struct{}
	gen    func() (uint32, error) // the kernel's generation (tests replace it)

	signals chan Signal   // buffered; a full channel already holds a signal
	done    chan struct{} // closed when the reader stops
	err     error         // why the reader stopped, read after done
	closing chan struct{}
	once    sync.Once
}

// Open subscribes to nftables events in the network namespace at
// netnsPath ("" = the current one) and starts reading them.
func Open(log hclog.Logger, netnsPath string) (*Monitor, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	m := &Monitor{
		log:     log,
		commits: &agent.Commits{},
		table:   render.TableName,
		moved:   make(chan struct{}),
		signals: make(chan Signal, 2),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	m.gen = m.generation
	cfg := &netlink.Config{}
	if netnsPath != "" {
		f, err := os.Open(netnsPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace: %w", err)
		}
		m.netns = f
		cfg.NetNS = int(f.Fd())
	}
	var err error
	if m.events, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("dial netfilter netlink for events: %w", err), m.closeAll())
	}
	if m.query, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("dial netfilter netlink for generations: %w", err), m.closeAll())
	}
	if err := m.events.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return nil, errors.Join(fmt.Errorf("join nftables events group: %w", err), m.closeAll())
	}
	enlargeReadBuffer(log, m.events)
	m.joined()
	go m.read()
	return m, nil
}

func enlargeReadBuffer(log hclog.Logger, c *netlink.Conn) {
	raw, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) {
			// Ignores rmem_max; needs CAP_NET_ADMIN, which the agent has.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, eventBuffer)
		})
		if err == nil && serr == nil {
			return
		}
	}
	if err := c.SetReadBuffer(eventBuffer); err != nil {
		log.Debug("cannot enlarge the event buffer", "error", err)
	}
}

// Close stops reading events and releases the sockets.
func (m *Monitor) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closing)
		err = m.closeAll()
		<-m.done
	})
	return err
}

func (m *Monitor) closeAll() error {
	var err error
	if m.events != nil {
		err = errors.Join(err, m.events.Close())
	}
	if m.query != nil {
		err = errors.Join(err, m.query.Close())
	}
	if m.netns != nil {
		err = errors.Join(err, m.netns.Close())
	}
	return err
}

func (m *Monitor) signal(s Signal) {
	select {
	case m.signals <- s:
	default:
	}
}

// read turns event messages into signals until the socket is closed or
// fails.
func (m *Monitor) read() {
	defer close(m.done)
	d := newDecoder(m.table)
	for {
		msgs, err := m.events.Receive()
		if err != nil {
			select {
			case <-m.closing:
				return
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The kernel dropped events: a commit may have gone unseen.
				d.reset()
				m.lost()
				m.log.Debug("nftables events lost")
				m.signal(SignalLost)
				continue
			}
			m.err = fmt.Errorf("receive nftables events: %w", err)
			return
		}
		m.received.Add(uint64(len(msgs)))
		for _, msg := range msgs {
			end, ended, err := d.message(msg)
			if err != nil {
				m.log.Warn("unreadable nftables event", "error", err)
				m.lost()
				m.signal(SignalLost)
				continue
			}
			if !ended {
				continue
			}
			m.observed(end)
			if !end.touched {
				continue
			}
			c := end.Commit
			if m.commits.Observe(c) {
				m.log.Debug("foreign commit to doorman's table", "generation", c.Gen, "port", c.PortID)
				m.signal(SignalForeign)
			} else {
				m.log.Trace("own commit", "generation", c.Gen, "port", c.PortID)
			}
		}
	}
}

// leave takes the event socket out of the nftables events group, so that
// commits build no events for it; false if it could not.
func (m *Monitor) leave() bool {
	// Commits from here go unseen: rejoin rebases the run past them, and
	// Quiet vouches for none of them.
	if err := m.events.LeaveGroup(unix.NFNLGRP_NFTABLES); err != nil {
		m.log.Warn("cannot leave the nftables events group; a large sync is slower", "error", err)
		return false
	}
	return true
}

// rejoin puts the event socket back in the group; when it cannot, changes
// from now on go unseen but for the periodic resync.
func (m *Monitor) rejoin() {
	if err := m.events.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		m.log.Error("cannot rejoin the nftables events group; drift is found by the periodic resync only", "error", err)
		m.signal(SignalLost)
		return
	}
	m.joined()
}

// seenRun is a run of generations (after, upTo] whose commits the monitor
// saw, one after another, none missed.
type seenRun struct {
	valid    bool
	after    uint32
	upTo     uint32
	touched  uint32 // the last generation in the run that touched the table
	anyTouch bool
}

// later reports whether generation a comes after b (generations wrap).
func later(a, b uint32) bool { return int32(a-b) > 0 }

// update changes the run under seenMu and wakes Quiet's waiters.
func (m *Monitor) update(f func(r *seenRun)) {
	m.seenMu.Lock()
	defer m.seenMu.Unlock()
	f(&m.seen)
	close(m.moved)
	m.moved = make(chan struct{})
}

// rebase starts an empty run at the kernel's current generation, read
// after the monitor joined the events group or learnt that events were
// lost. Every message of a later commit is sent after that commit moves
// the generation on, so after the reading: such commits are seen whole.
// A commit at or before the generation may have been seen in part (its
// first messages lost, or sent before the join), so no run ever starts
// from an event. Without the generation there is no run until the next
// event's rebase succeeds. r is m.seen, seenMu held.
func (m *Monitor) rebase(r *seenRun) {
	gen, err := m.gen()
	if err != nil {
		*r = seenRun{}
		return
	}
	*r = seenRun{valid: true, after: gen, upTo: gen}
}

// joined rebases the run once the monitor is in the events group.
func (m *Monitor) joined() { m.update(m.rebase) }

// lost rebases the run after events were lost or could not be read: the
// commits they belonged to are at or before the generation read now.
func (m *Monitor) lost() { m.update(m.rebase) }

// observed adds the end of a commit to the run. A commit at or before the
// run's end was seen already or is older than the run (its events queued
// before a rebase); one after a gap (commits that went unseen) rebases it.
func (m *Monitor) observed(c commitEnd) {
	m.update(func(r *seenRun) {
		if !r.valid {
			m.rebase(r)
		}
		switch {
		case !r.valid || !later(c.Gen, r.upTo):
		case c.Gen == r.upTo+1:
			r.upTo = c.Gen
			if c.touched {
				r.touched, r.anyTouch = c.Gen, true
			}
		default:
			m.rebase(r)
		}
	})
}

// quietWait bounds how long Quiet waits for the events of commits the
// kernel already counts: the kernel queues a commit's events before the
// committing call returns, so they are normally read within microseconds;
// those of a commit made while the monitor was out of the events group
// never come, and Quiet says false after this wait.
const quietWait = 100 * time.Millisecond

// Quiet reports whether the monitor saw every commit after generation
// from up to and including generation to, and none of them touched
// doorman's table (see dataplane.Witness). It waits up to quietWait for
// the events up to to; when in doubt it says false.
func (m *Monitor) Quiet(from, to uint32) bool {
	if from == to {
		return true
	}
	if !later(to, from) {
		return false
	}
	timeout := time.NewTimer(quietWait)
	defer timeout.Stop()
	for {
		m.seenMu.Lock()
		r, moved := m.seen, m.moved
		m.seenMu.Unlock()
		if r.valid && !later(to, r.upTo) {
			// Every commit since from was seen, and the last that touched
			// doorman's table (if any) came before it.
			untouched := !r.anyTouch || !later(r.touched, from)
			return !later(r.after, from) && untouched
		}
		select {
		case <-moved:
		case <-timeout.C:
			return false
		case <-m.closing:
			return false
		}
	}
}

// generation asks the kernel for the current nftables generation.
func (m *Monitor) generation() (uint32, error) {
	m.queryMu.Lock()
	defer m.queryMu.Unlock()
	msgs, err := m.query.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, msg := range msgs {
		if msg.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) {
			return genID(msg)
		}
	}
	return 0, errors.New("get nftables generation: no answer")
}

// Kernel wraps k so that each transaction is bracketed by the generation
// before and after it: the monitor then knows the agent's own commits.
func (m *Monitor) Kernel(k agent.Kernel) agent.Kernel {
	return &ownKernel{m: m, inner: k}
}

type ownKernel struct {
	m     *Monitor
	inner agent.Kernel
}

func (k *ownKernel) Sync(view map[string]*doormanv1.Entry) (dataplane.Stats, error) {
	if len(view) < quietSyncEntries {
		before, ok := k.begin()
		stats, err := k.inner.Sync(view)
		k.end(before, ok, stats, err)
		return stats, err
	}
	before, ok := k.begin()
	left := k.m.leave()
	stats, err := k.inner.Sync(view)
	if left {
		k.m.rejoin()
	}
	after, committed := k.end(before, ok, stats, err)
	if left && ok {
		// Sync commits once when it changes something (rarely more: a
		// foreign chain in doorman's table is deleted on its own). Any
		// other commit in the window went unseen.
		own := uint32(0)
		if committed {
			own = 1
		}
		if n := after - before; n > own {
			k.m.log.Debug("commits while out of the events group", "commits", n, "own", own)
			k.m.signal(SignalLost)
		}
	}
	return stats, err
}

func (k *ownKernel) Apply(changes []dataplane.Change) (dataplane.Stats, error) {
	before, ok := k.begin()
	stats, err := k.inner.Apply(changes)
	k.end(before, ok, stats, err)
	return stats, err
}

// RetireUnused runs one transaction per chain; each is the agent's own.
func (k *ownKernel) RetireUnused() (int, error) {
	before, ok := k.begin()
	n, err := k.inner.RetireUnused()
	k.end(before, ok, dataplane.Stats{Ops: n}, nil)
	return n, err
}

// Unchanged makes no transaction: it only asks.
func (k *ownKernel) Unchanged() bool { return agent.Unchanged(k.inner) }

func (k *ownKernel) begin() (uint32, bool) {
	gen, err := k.m.generation()
	if err != nil {
		// Without a window the agent's own commit looks foreign: one
		// resync that finds nothing to do.
		k.m.log.Warn("cannot read nftables generation", "error", err)
		return 0, false
	}
	k.m.commits.Begin(gen)
	return gen, true
}

// end closes the window begin opened and returns the generation after it
// and whether the transaction committed.
func (k *ownKernel) end(before uint32, ok bool, stats dataplane.Stats, err error) (uint32, bool) {
	if !ok {
		return 0, false
	}
	var partial *dataplane.InvalidEntriesError
	committed := stats.Ops > 0 && (err == nil || errors.As(err, &partial))
	gen, gerr := k.m.generation()
	if gerr != nil {
		k.m.log.Warn("cannot read nftables generation", "error", gerr)
		gen, committed = before, false
	}
	if foreign := k.m.commits.End(gen, committed); len(foreign) > 0 {
		k.m.log.Debug("foreign commit to doorman's table during an own transaction", "commits", len(foreign))
		k.m.signal(SignalForeign)
	}
	return gen, committed
}
