package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Process is a component the caller started on the cluster (StartProxyOn,
// StartDoormanControlPlane) and stops itself.
type Process struct {
	p *proc
}

// PID is the process id (`ip netns exec` execs the binary, so it is the
// component's own).
func (p *Process) PID() int { return p.p.cmd.Process.Pid }

// LogPath is the process's log file.
func (p *Process) LogPath() string { return p.p.logPath }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool { return p.p.exited() }

// Stop sends SIGTERM, then SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) { p.p.stop(grace) }

// KubeProxyMode is a kube-proxy --proxy-mode.
type KubeProxyMode string

const (
	KubeProxyNFTables KubeProxyMode = "nftables"
	KubeProxyIPTables KubeProxyMode = "iptables"
)

// StartDoormanControlPlane starts doorman's control plane on loopback and,
// the first time, the relay from GatewayIP:ControlPlanePort to it; a
// restarted control plane reuses the same ports. It returns once /readyz
// answers (the informers have synced). For a cluster started with
// ProxyNone; node agents are then started with StartAgent. args are
// added to the control plane's command line (e.g. --profiling).
func (c *Cluster) StartDoormanControlPlane(ctx context.Context, args ...string) (*Process, error) {
	if c.cpGRPC == 0 {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.cpGRPC, c.cpHTTP = ports[0], ports[1]
		c.mu.Unlock()
		r, err := startRelay(c.netNS, hostPort(GatewayIP, ControlPlanePort), hostPort("127.0.0.1", c.cpGRPC))
		if err != nil {
			return nil, fmt.Errorf("control plane relay: %w", err)
		}
		c.relays = append(c.relays, r)
	}
	p, err := startProc(c.logDir, "controlplane", "", append([]string{filepath.Join(c.cfg.DoormanBinDir, "controlplane"),
		"--kubeconfig=" + c.kubeconfig,
		"--listen=" + hostPort("127.0.0.1", c.cpGRPC),
		"--http-listen=" + hostPort("127.0.0.1", c.cpHTTP),
		"--insecure",
	}, args...)...)
	if err != nil {
		return nil, err
	}
	c.addProc(p)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, p, "http://"+hostPort("127.0.0.1", c.cpHTTP)+"/readyz", nil); err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("doorman control plane: %w", err)
	}
	return &Process{p: p}, nil
}

// ControlPlaneHTTP is doorman's control plane HTTP address on loopback
// (/healthz, /readyz, /metrics); empty before it was started (it is set
// before StartDoormanControlPlane starts the process).
func (c *Cluster) ControlPlaneHTTP() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cpHTTP == 0 {
		return ""
	}
	return hostPort("127.0.0.1", c.cpHTTP)
}

// StartKubeProxyOn starts upstream kube-proxy in the given mode on one node
// and returns once the process started (WaitNodeHealth says when it has
// synced its rules once).
func (c *Cluster) StartKubeProxyOn(ctx context.Context, nodeName string, mode KubeProxyMode) (*Process, error) {
	n, ok := c.node(nodeName)
	if !ok {
		return nil, fmt.Errorf("no node %q", nodeName)
	}
	run := clusterKubeProxy
	run.mode, run.clusterCIDR = mode, PodCIDR
	p, err := startProc(c.logDir, "kube-proxy-"+string(mode)+"-"+n.Name, n.NetNS,
		append([]string{c.bin("kube-proxy")}, c.kubeProxyArgs(n, run)...)...)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// AgentPID is the pid of the node agent running on a node, 0 when none.
func (c *Cluster) AgentPID(nodeName string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.agents[nodeName]; p != nil && !p.exited() {
		return p.cmd.Process.Pid
	}
	return 0
}

// WaitNodeHealth waits until the component on a node answers /healthz on
// AgentHealthPort.
func (c *Cluster) WaitNodeHealth(ctx context.Context, nodeName string, timeout time.Duration) error {
	n, ok := c.node(nodeName)
	if !ok {
		return fmt.Errorf("no node %q", nodeName)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &netnsHTTP{ns: n.NetNS}
	return waitHTTP(wctx, nil, "http://"+hostPort("127.0.0.1", AgentHealthPort)+"/healthz", hc.client())
}

// AgentCachePath is the bbolt cache StartAgent gives a node's agent.
func (c *Cluster) AgentCachePath(nodeName string) string {
	return filepath.Join(c.work, nodeName, "agent.db")
}

// InNetNS runs fn on a thread switched into the named network namespace;
// sockets it opens stay there.
func InNetNS(name string, fn func() error) error { return inNetNS(name, fn) }
