//go:build e2e

package security

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// maxConnectionAge is the control plane's --max-connection-age here
// (main_test.go), short so that a test sees every agent's connection end.
const maxConnectionAge = 20 * time.Second

// waitAgentsAcked waits until every node's agent is connected and has
// acknowledged the version the control plane wants it to hold.
func waitAgentsAcked(t *testing.T, inspector string, timeout time.Duration) {
	t.Helper()
	ic := doormanv1.NewInspectServiceClient(dial(t, true))
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		list, err := ic.ListNodes(withToken(ctx, inspector), &doormanv1.ListNodesRequest{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		acked := 0
		for _, n := range list.GetNodes() {
			// A resume is acked at the current version, which may be newer
			// than the last one that changed this node's view (desired).
			if n.GetConnected() && n.GetAckedVersion() > 0 && n.GetAckedVersion() >= n.GetDesiredVersion() {
				acked++
			}
		}
		if acked == len(c.Nodes()) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agents not all connected and acked: %v", list.GetNodes())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var (
	sendingRE   = regexp.MustCompile(`sending update: node=(\S+) version=\d+ full=(\w+) replaced_buckets=(\d+) upserts=(\d+) removals=(\d+)`)
	connectedRE = regexp.MustCompile(`node connected: node=(\S+) session=\S+ holding_version=(\d+)`)
	agedOutRE   = regexp.MustCompile(`stream ended: .*max_age`)
	reconnectRE = regexp.MustCompile(`: connected: `)
)

// agentMetric reads one of a node agent's metrics.
func agentMetric(t *testing.T, node, name string) float64 {
	t.Helper()
	m, err := c.AgentMetrics(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m[name]
	if !ok {
		t.Fatalf("%s: no metric %s", node, name)
	}
	return v
}

// TestMaxConnectionAgeResume: the control plane ends every connection
// after --max-connection-age; each agent reconnects, is authenticated
// again and resumes by digests: the control plane sends it no full view,
// the agent makes no full sync and its kernel is not touched.
func TestMaxConnectionAgeResume(t *testing.T) {
	inspector := grantInspect(t, "e2e-inspector", map[string]string{"services": "", "endpointslices": "discovery.k8s.io"})
	waitAgentsAcked(t, inspector, 60*time.Second)

	type figures struct {
		fullSyncs float64
		gen       uint32
		log       cluster.LogMark
	}
	before := map[string]figures{}
	for _, n := range c.Nodes() {
		gen, err := c.NFTGeneration(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		before[n.Name] = figures{fullSyncs: agentMetric(t, n.Name, "doorman_agent_full_syncs_total"), gen: gen, log: cluster.MarkLog(c.AgentLog(n.Name))}
	}
	cpLog := cluster.MarkLog(c.ControlPlaneLog())

	// Every agent's connection ages out (age ±10 %, then the grace and
	// gRPC's drain) and the agent connects again.
	deadline := time.Now().Add(3*maxConnectionAge + 30*time.Second)
	for _, n := range c.Nodes() {
		for {
			text := before[n.Name].log.Since()
			if loc := agedOutRE.FindStringIndex(text); loc != nil && reconnectRE.MatchString(text[loc[1]:]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no stream ended by the connection's age and reconnected in the agent's log:\n%s", n.Name, text)
			}
			time.Sleep(time.Second)
		}
	}
	waitAgentsAcked(t, inspector, 60*time.Second)

	text := cpLog.Since()
	for _, n := range c.Nodes() {
		var holding []string
		for _, m := range connectedRE.FindAllStringSubmatch(text, -1) {
			if m[1] == n.Name {
				holding = append(holding, m[2])
			}
		}
		if len(holding) == 0 {
			t.Errorf("%s: no new session in the control plane's log", n.Name)
		}
		for _, v := range holding {
			if v == "0" {
				t.Errorf("%s: reconnected holding nothing (holding_version=0)", n.Name)
			}
		}
		full, incremental := 0, 0
		for _, m := range sendingRE.FindAllStringSubmatch(text, -1) {
			if m[1] != n.Name {
				continue
			}
			if m[2] == "true" {
				full++
				continue
			}
			incremental++
			if up, _ := strconv.Atoi(m[4]); up != 0 {
				t.Errorf("%s: a resume sent %s upserts (%s), want none: nothing changed", n.Name, m[4], m[0])
			}
		}
		if full != 0 || incremental == 0 {
			t.Errorf("%s: %d full and %d incremental updates sent since the mark, want 0 full and at least 1 (the resume)", n.Name, full, incremental)
		}
		fullSyncs := agentMetric(t, n.Name, "doorman_agent_full_syncs_total")
		if fullSyncs != before[n.Name].fullSyncs {
			t.Errorf("%s: %v full syncs across the reconnect, want none", n.Name, fullSyncs-before[n.Name].fullSyncs)
		}
		gen, err := c.NFTGeneration(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if gen != before[n.Name].gen {
			t.Errorf("%s: nftables generation moved from %d to %d across the reconnect", n.Name, before[n.Name].gen, gen)
		}
		t.Logf("%s: %d sessions since the mark (holding versions %s), %d full and %d incremental updates, full syncs %v, generation %d",
			n.Name, len(holding), strings.Join(holding, ","), full, incremental, fullSyncs, gen)
	}
	if t.Failed() {
		fmt.Fprintln(os.Stderr, "control plane log since the mark:\n"+text)
	}
}
