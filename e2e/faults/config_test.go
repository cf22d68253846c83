//go:build e2e

package faults

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// An agent started with --config programs as before, and its Inspect
// GetConfig shows the file's values, with the command line's flags
// winning over the file's.
func TestAgentConfigFile(t *testing.T) {
	const node, bulk = "node2", 50
	cp := c.ControlPlaneGRPC()
	path := filepath.Join(t.TempDir(), "nodeagent.yaml")
	// healthListen is also on the cluster's command line
	// (--health-listen=0.0.0.0:10256), which wins.
	text := `apiVersion: config.doorman.io/v1alpha1
kind: NodeAgentConfiguration
resyncPeriod: 2m
maxCacheAge: 48h
healthzTimeout: 90s
healthListen: "127.0.0.1:1"
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, node, cp, 30*time.Second)
	t.Cleanup(func() { restartAgent(t, node) })
	// Traffic through the node all along: the restart with a file keeps
	// the kernel's rules, and the agent keeps programming them.
	ls := loads{fromPod(t, node, addr(webIP, webPort)), fromExternal(t, node)}

	c.StopAgent(node)
	if err := c.StartAgentWith(node, "--config="+path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitAgentHealthy(ctx, node); err != nil {
		t.Fatal(err)
	}
	want := changeBulk(t, bulk, cp, node)
	waitAgentEntry(t, node, ns+"/"+bulkName(bulk)+":", want, 30*time.Second)
	waitConverged(t, node, cp, 30*time.Second)
	time.Sleep(time.Second)
	ls.finish(t, 0)

	var got *doormanv1.AgentInspectServiceGetConfigResponse
	if err := agentInspect(ctx, node, func(ctx context.Context, ic doormanv1.AgentInspectServiceClient) error {
		var err error
		got, err = ic.GetConfig(ctx, &doormanv1.AgentInspectServiceGetConfigRequest{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got.GetPath() != path || got.GetKind() != "NodeAgentConfiguration" || got.GetApiVersion() != "config.doorman.io/v1alpha1" {
		t.Errorf("GetConfig path %q kind %q apiVersion %q, want %q NodeAgentConfiguration config.doorman.io/v1alpha1",
			got.GetPath(), got.GetKind(), got.GetApiVersion(), path)
	}
	fields := got.GetFields()
	wantFields := map[string]string{
		"resyncPeriod": "2m0s", "maxCacheAge": "48h0m0s", "healthzTimeout": "1m30s", // the file
		"healthListen":       "0.0.0.0:" + strconv.Itoa(cluster.AgentHealthPort), // the command line over the file
		"nodeName":           node,
		"metricsBindAddress": "127.0.0.1:10249", // the default
	}
	gotFields := map[string]string{}
	for k := range wantFields {
		gotFields[k] = fields[k]
	}
	if diff := cmp.Diff(wantFields, gotFields); diff != "" {
		t.Errorf("GetConfig fields (-want +got):\n%s", diff)
	}
}

// restartAgent puts node's agent back as the cluster started it.
func restartAgent(t *testing.T, node string) {
	c.StopAgent(node)
	if err := c.StartAgent(node); err != nil {
		t.Errorf("restart agent on %s: %v", node, err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.WaitAgentHealthy(ctx, node); err != nil {
		t.Errorf("agent on %s: %v", node, err)
	}
}
