package dataplane

import (
	"testing"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestTrustedSyncRebuildWritesElements: a Sync that trusts the kernel to
// hold the view (so only summarizes it) but finds the table's skeleton of
// another shape (here a set the layout does not have; after an upgrade, a
// set of another type) replaces the table whole, and writes every element
// into the new one.
func TestTrustedSyncRebuildWritesElements(t *testing.T) {
	node := testnet.NewNS(t, "node")
	open := func() *Dataplane {
		d, err := Open(nil, Options{NetNSPath: node.Path()})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80, NodePort: 30080, Endpoints: []*doormanv1.Endpoint{{Ip: "10.0.2.2", Port: 8080}, {Ip: "10.0.3.2", Port: 8080}}}
	view := map[string]*doormanv1.Entry{
		doormanv1.NodeKey:            {Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "node", NodeportAddresses: []string{"10.0.1.1"}}}},
		doormanv1.ServicePortKey(sp): {Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}},
	}
	first := open()
	if _, err := first.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	mark := first.Mark()

	c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: render.TableName, Family: nftables.TableFamilyINet}
	if err := c.AddSet(&nftables.Set{Table: table, Name: "foreign", KeyType: nftables.TypeIPAddr}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// As if the kernel were still at the recorded generation: only the
	// skeleton, of another shape, says otherwise.
	if mark.Generation, err = first.generation(); err != nil {
		t.Fatal(err)
	}

	second := open()
	second.Trust(mark)
	stats, err := second.Sync(view)
	if err != nil {
		t.Fatalf("trusted Sync: %v", err)
	}
	if stats.Read != ReadSkipped {
		t.Fatalf("trusted Sync: read %q, want %q (the case under test)", stats.Read, ReadSkipped)
	}
	third := open()
	if stats, err := third.Sync(view); err != nil || stats.Read != ReadNoRecord || stats.Ops != 0 {
		t.Errorf("full read after the rebuild: read %q, %d ops, error %v; want %q, 0 ops", stats.Read, stats.Ops, err, ReadNoRecord)
	}
}
