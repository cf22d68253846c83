package app

import (
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/assemble"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
	"github.com/doorman-proxy/doorman/nodeagent/internal/drift"
	"github.com/doorman-proxy/doorman/nodeagent/internal/followup"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	"github.com/doorman-proxy/doorman/nodeagent/internal/metrics"
)

// kernelLayers are the wrappers around the dataplane: each is told of
// every transaction the agent makes, and the order they are stacked in
// carries meaning (see stack).
type kernelLayers struct {
	timing   *metrics.Metrics
	monitor  *drift.Monitor // nil: no event monitor, no layer
	followUp followup.Config
	rules    *metrics.Rules
	health   *healthcheck.Proxy
	wrap     func(agent.Kernel) agent.Kernel // tests; nil = none
	node     string                          // the node, for the assembly
}

// stack returns dp inside the layers, innermost first:
//
//  1. timing (sync duration, sizes, reads) next to the dataplane, so that
//     it measures the kernel's transaction alone;
//  2. the drift monitor, which brackets each transaction with the
//     nftables generation before and after it, so that it knows the
//     agent's own commits; the follow-ups run outside that window, which
//     stays as short as the transaction;
//  3. the follow-ups (conntrack clean-up, health check node ports), run
//     after each transaction that committed, the start-up Sync included;
//  4. the rules metrics, whose pending counts cover the transaction and
//     its follow-ups;
//  5. health, outermost, which tells the health state of a commit only
//     once the layers below are done with it, and bounds the texts of the
//     errors any of them return, which the agent keeps;
//  6. the assembly of ports sent by node, outside every layer that reads
//     ports, so that none of them sees a shard or a port without its
//     endpoints;
//  7. the test's wrapper, which sees what the agent sees.
func (l kernelLayers) stack(dp agent.Kernel) agent.Kernel {
	kernel := l.timing.Kernel(dp)
	if l.monitor != nil {
		kernel = l.monitor.Kernel(kernel)
	}
	kernel = followup.Wrap(kernel, l.followUp)
	kernel = l.rules.Kernel(kernel)
	kernel = &healthKernel{Kernel: kernel, health: l.health}
	kernel = assemble.Wrap(kernel, l.node)
	if l.wrap != nil {
		kernel = l.wrap(kernel)
	}
	return kernel
}

// openLayers opens what the layers need: the drift monitor (it subscribes
// before the cached view is programmed, so no foreign change after
// start-up goes unseen; it is also the dataplane's witness), the conntrack cleaner and the health check node
// port servers. Each that cannot be opened is logged and left out. close
// closes them in the reverse order.
func (p *parts) openLayers() (_ kernelLayers, close func(), err error) {
	var cs closers
	l := kernelLayers{timing: p.m, health: p.health, wrap: p.cfg.wrapKernel, node: p.cfg.NodeName}
	monitor, err := drift.Open(p.log.Named("drift"), p.cfg.NetNSPath)
	if err != nil {
		p.log.Error("no nftables event monitor: drift is found by the periodic resync only", "error", err, "period", p.cfg.ResyncPeriod)
	} else {
		cs.add(func() { closeOrWarn(p.log, "close drift monitor", monitor.Close) })
		l.monitor = monitor
		// Commits to other tables, which the monitor sees leave doorman's
		// alone, do not make the next Sync read the table back.
		p.dp.SetWitness(monitor)
	}

	// After every committed transaction (the start-up Sync from the cache
	// included): stale UDP conntrack entries go, health check ports follow
	// the view.
	var cleaner followup.Cleaner
	if c, err := conntrack.New(p.log, conntrack.Options{NetNSPath: p.cfg.NetNSPath}); err != nil {
		p.log.Error("no conntrack clean-up: stale UDP entries are left to time out", "error", err)
	} else {
		cs.add(func() { closeOrWarn(p.log, "close conntrack", c.Close) })
		cleaner = c
	}
	hcPorts := healthcheck.New(p.log, healthcheck.Options{NetNSPath: p.cfg.NetNSPath, Address: p.cfg.HealthCheckAddress})
	cs.add(func() { _ = hcPorts.Close() })
	l.followUp = followup.Config{Cleaner: cleaner, Health: hcPorts, Observer: p.m, Logger: p.log.Named("followup")}

	if l.rules, err = metrics.NewRules(p.reg); err != nil {
		cs.close()
		return kernelLayers{}, nil, err
	}
	return l, cs.close, nil
}

// closers are close functions, run in the reverse order of their adding
// (as defer runs them).
type closers []func()

func (cs *closers) add(close func()) { *cs = append(*cs, close) }

func (cs closers) close() {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}
