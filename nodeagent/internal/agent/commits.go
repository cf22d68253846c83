package agent

import "sync"

// Commit is one nftables transaction that touched doorman's table, as the
// monitor of nftables events saw it: the generation it made and the netlink
// port that sent it (0 for the kernel itself).
type Commit struct {
	Gen    uint32
	PortID uint32
}

// window is the generations (after, upTo] in which one of the agent's own
// transactions committed.
type window struct {
	after, upTo uint32
	// single: the window holds exactly one generation, the agent's; the
	// commit seen with it names the agent's netlink port.
	single bool
}

// keptWindows bounds the own windows kept for commits the monitor reads
// late.
const keptWindows = 64

// Commits tells the agent's own kernel transactions from everyone else's,
// so that only foreign changes to doorman's table trigger a resync. The
// kernel shell reports the nftables generation before (Begin) and after
// (End) each transaction of the agent; the monitor asks about each commit
// it sees (Observe). Once one own commit was seen alone in its window, its
// netlink port identifies the agent's later commits exactly; until then a
// commit inside an own window counts as the agent's (a foreign commit in the
// same instant is then left to the periodic resync).
//
// Generation ids are compared in serial-number arithmetic, so they may wrap.
// Commits is safe for concurrent use.
type Commits struct {
	mu        sync.Mutex
	port      uint32
	portKnown bool
	open      bool
	openAfter uint32
	windows   []window
	held      []Commit // seen during an open transaction, decided at End
}

// after reports whether generation a comes after b.
func after(a, b uint32) bool { return int32(a-b) > 0 }

func (w window) holds(gen uint32) bool {
	return after(gen, w.after) && !after(gen, w.upTo)
}

// Begin records that an own transaction starts while the kernel is at
// generation gen.
func (c *Commits) Begin(gen uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open, c.openAfter = true, gen
}

// End records that the own transaction begun last ended at generation gen;
// committed says whether it changed the kernel. It returns the foreign ones
// among the commits Observe held back while the transaction ran.
func (c *Commits) End(gen uint32, committed bool) (foreign []Commit) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return nil
	}
	c.open = false
	if committed && !c.portKnown {
		w := window{after: c.openAfter, upTo: gen, single: gen == c.openAfter+1 || (c.openAfter == ^uint32(0) && gen == 1)}
		c.windows = append(c.windows, w)
		if len(c.windows) > keptWindows {
			c.windows = c.windows[len(c.windows)-keptWindows:]
		}
	}
	held := c.held
	c.held = nil
	for _, h := range held {
		if !c.decide(h) {
			continue
		}
		foreign = append(foreign, h)
	}
	return foreign
}

// Observe reports whether a commit that touched doorman's table is
// foreign. A commit seen while an own transaction runs, with a generation
// after its start, is held back and decided by End: Observe then returns
// false.
func (c *Commits) Observe(cm Commit) (foreign bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.portKnown && c.open && after(cm.Gen, c.openAfter) {
		c.held = append(c.held, cm)
		return false
	}
	return c.decide(cm)
}

func (c *Commits) decide(cm Commit) (foreign bool) {
	if c.portKnown {
		return cm.PortID != c.port
	}
	for _, w := range c.windows {
		if w.holds(cm.Gen) {
			if w.single && cm.PortID != 0 {
				c.port, c.portKnown = cm.PortID, true
				c.windows = nil
			}
			return false
		}
	}
	return true
}

// Port returns the agent's netlink port once learnt.
func (c *Commits) Port() (port uint32, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.port, c.portKnown
}
