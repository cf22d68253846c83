package cluster

import (
	"context"
	"fmt"
	"time"
)

// RestartProxyWith restarts what implements Services on one node with extra
// flags after the cluster's own (a later flag wins) and waits until it
// answers /healthz: the node agent with ProxyDoorman, kube-proxy with
// ProxyKubeProxy. No extra flags restores the cluster's own. Flags both
// share (kube-proxy's names, e.g. --detect-local-mode, --masquerade-all)
// let one test judge either.
func (c *Cluster) RestartProxyWith(ctx context.Context, nodeName string, extraArgs ...string) error {
	n, ok := c.node(nodeName)
	if !ok {
		return fmt.Errorf("no node %q", nodeName)
	}
	switch c.cfg.Proxy {
	case ProxyDoorman:
		c.StopAgent(nodeName)
		if err := c.StartAgentWith(nodeName, extraArgs...); err != nil {
			return err
		}
	case ProxyKubeProxy:
		c.StopAgent(nodeName) // kube-proxy runs in the agent's place
		args := append([]string{c.bin("kube-proxy")}, c.kubeProxyArgs(n, clusterKubeProxy)...)
		p, err := startProc(c.logDir, "kube-proxy-"+n.Name, n.NetNS, append(args, extraArgs...)...)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.agents[n.Name] = p
		c.mu.Unlock()
	default:
		return fmt.Errorf("no proxy to restart with %s", c.cfg.Proxy)
	}
	return c.WaitNodeHealth(ctx, nodeName, 60*time.Second)
}

// kubeProxyRun is what differs between the kube-proxies the cluster
// starts: the mode, the Pod ranges it is told of and its two listeners.
type kubeProxyRun struct {
	mode          KubeProxyMode
	clusterCIDR   string
	health        string // --healthz-bind-address
	metricsListen string // --metrics-bind-address
}

// clusterKubeProxy is the kube-proxy of a cluster run with ProxyKubeProxy:
// nftables mode, dual-stack, in the agent's place (its ports).
var clusterKubeProxy = kubeProxyRun{
	mode:          KubeProxyNFTables,
	clusterCIDR:   PodCIDR + "," + PodCIDR6,
	health:        hostPort("0.0.0.0", AgentHealthPort),
	metricsListen: "127.0.0.1:10249",
}

// kubeProxyArgs are the flags kube-proxy is started with on a node.
func (c *Cluster) kubeProxyArgs(n Node, r kubeProxyRun) []string {
	return []string{
		"--kubeconfig=" + c.NodeKubeconfig(),
		"--hostname-override=" + n.Name,
		"--proxy-mode=" + string(r.mode),
		"--cluster-cidr=" + r.clusterCIDR,
		"--conntrack-max-per-core=0",
		"--metrics-bind-address=" + r.metricsListen,
		"--healthz-bind-address=" + r.health,
		"--v=1",
	}
}
