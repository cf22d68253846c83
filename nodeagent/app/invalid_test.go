package app

import (
	"strings"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestInvalidEntryRefusedAlone: on a real kernel, an update that carries
// one entry the shared validator refuses (an IPv6 LoadBalancer port whose
// loadBalancerSourceRanges hold the IPv4-mapped ::ffff:10.0.0.0/104, as a
// control plane that let it through would send it) programs every other
// entry, is acknowledged with that entry not programmed, and later
// updates apply without touching it until it changes.
func TestInvalidEntryRefusedAlone(t *testing.T) {
	ns, k, a := agentOnKernel(t, "invalid", "no nft binary to read the table")

	lb6 := func(ranges ...string) *doormanv1.Entry {
		return withDigest(t, &doormanv1.ServicePort{Namespace: "default", Name: "lb6", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
			Family: doormanv1.IPFamily_IP_FAMILY_IPV6, ClusterIp: "fd00::10", Port: 80,
			LoadBalancerIps: []string{"2001:db8::64"}, LoadBalancerSourceRanges: ranges,
			Endpoints: []*doormanv1.Endpoint{{Ip: "fd00:244::2", Port: 8080}}})
	}
	node := nodeWithDigest(t, "192.168.50.1")
	web, web2 := webService(t, "10.244.1.2"), webService(t, "10.244.9.9")
	lb1 := lbService(t, "lb1", "198.51.100.1", "10.0.0.0/8")
	bad := lb6("::ffff:10.0.0.0/104")
	fixed := lb6("2001:db8:aaaa::/48")

	view := []*doormanv1.Entry{node, web, lb1, bad}
	out := a.Handle(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: view, ViewDigest: digestOf(view)})
	ack := out.Reply.GetAck()
	if ack == nil || ack.GetViewDigest() != digestOf(view) || len(ack.GetNotProgrammed()) != 1 || ack.GetNotProgrammed()[0] != bad.GetKey() {
		t.Fatalf("first update: %v, want an ack of the whole view with %s not programmed", out.Reply, bad.GetKey())
	}
	if out.Warning == nil || !strings.Contains(out.Warning.Error(), "IPv4-mapped") {
		t.Errorf("warning %v, want the validator's reason", out.Warning)
	}
	table := nftIn(t, ns, "", "list", "table", "inet", "doorman")
	if !strings.Contains(table, "10.244.1.2") || !strings.Contains(table, "198.51.100.1") || strings.Contains(table, "2001:db8::64") || strings.Contains(table, "ffff") {
		t.Errorf("kernel after the first update: want web and lb1, nothing of lb6:\n%s", table)
	}
	k.take()

	// A good change: one Apply; the invalid entry still listed.
	view = []*doormanv1.Entry{node, web2, lb1, bad}
	out = a.Handle(&doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(view)})
	keptOut(t, a, k, out, bad.GetKey(), "invalid value")

	// Fixed: programmed, no longer listed.
	view = []*doormanv1.Entry{node, web2, lb1, fixed}
	fixApplies(t, a, ns, 3, view, fixed, "2001:db8::64")
	if c := a.Counters(); c.Nacks != 0 || c.Invalid != 1 || c.NotProgrammed != 0 {
		t.Errorf("counters %+v: want no nack, one invalid value, nothing left out", c)
	}
}
