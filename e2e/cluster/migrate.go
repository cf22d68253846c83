package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// Ports of a kube-proxy started beside a node's agent
// (StartKubeProxyBeside): apart from the agent's, so that both can run at
// once during a migration.
const (
	KubeProxyHealthPort  = 10266
	KubeProxyMetricsPort = 10269
)

// StartKubeProxyBeside starts upstream kube-proxy in mode on one node, on
// ports apart from the agent's (StartKubeProxyOn uses the agent's), and
// waits until it is healthy (it has synced its rules once).
func (c *Cluster) StartKubeProxyBeside(ctx context.Context, nodeName string, mode KubeProxyMode) (*Process, error) {
	n, ok := c.node(nodeName)
	if !ok {
		return nil, fmt.Errorf("no node %q", nodeName)
	}
	run := kubeProxyRun{mode: mode, clusterCIDR: clusterKubeProxy.clusterCIDR,
		health: hostPort("0.0.0.0", KubeProxyHealthPort), metricsListen: hostPort("127.0.0.1", KubeProxyMetricsPort)}
	p, err := startProc(c.logDir, "kube-proxy-"+string(mode)+"-"+n.Name, n.NetNS,
		append([]string{c.bin("kube-proxy")}, c.kubeProxyArgs(n, run)...)...)
	if err != nil {
		return nil, err
	}
	c.addProc(p)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	hc := &netnsHTTP{ns: n.NetNS}
	if err := waitHTTP(wctx, p, "http://"+hostPort("127.0.0.1", KubeProxyHealthPort)+"/healthz", hc.client()); err != nil {
		p.stop(5 * time.Second)
		return nil, fmt.Errorf("kube-proxy on %s: %w", n.Name, err)
	}
	return &Process{p: p}, nil
}

// CleanupAgentOn runs `nodeagent --cleanup` for a node whose agent is
// stopped: its table, cache and sysctls go.
func (c *Cluster) CleanupAgentOn(ctx context.Context, nodeName string) (string, error) {
	return c.nodeagentOnce(ctx, nodeName, "--cleanup", "--cache="+c.AgentCachePath(nodeName))
}

// RemoveKubeProxyRulesOn runs `nodeagent --remove-kube-proxy-rules` in a
// node's namespace.
func (c *Cluster) RemoveKubeProxyRulesOn(ctx context.Context, nodeName string) (string, error) {
	return c.nodeagentOnce(ctx, nodeName, "--remove-kube-proxy-rules")
}

// nodeagentOnce runs a one-shot nodeagent in a node's namespace and
// returns its output.
func (c *Cluster) nodeagentOnce(ctx context.Context, nodeName string, args ...string) (string, error) {
	path, err := c.NodeNetNSPath(nodeName)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.DoormanBinDir, "nodeagent"), append([]string{"--netns=" + path}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nodeagent %v on %s: %w\n%s", args, nodeName, err, out)
	}
	return string(out), nil
}
