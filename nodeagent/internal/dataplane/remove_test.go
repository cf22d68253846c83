package dataplane_test

import (
	"errors"
	"testing"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// TestRemove: Remove deletes the table inet doorman with everything in it
// and leaves another inet table alone; a second Remove finds nothing; Apply
// refuses until a Sync programs the table again.
func TestRemove(t *testing.T) {
	node := testnet.NewNS(t, "node")
	c, err := nftables.New(nftables.WithNetNSFd(node.FD()))
	if err != nil {
		t.Fatal(err)
	}
	c.AddTable(&nftables.Table{Name: "firewall", Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	tables := func() map[string]bool {
		t.Helper()
		ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, tb := range ts {
			m[tb.Name] = true
		}
		return m
	}

	d := open(t, node)
	if removed, err := d.Remove(); err != nil || removed {
		t.Fatalf("Remove without a table: %v, %v; want false, nil", removed, err)
	}
	view := viewOf(nodeEntry(nodeIP), webService("10.0.2.2"))
	if _, err := d.Sync(view); err != nil {
		t.Fatal(err)
	}
	if got := tables(); !got[render.TableName] || !got["firewall"] {
		t.Fatalf("tables after Sync: %v", got)
	}
	if removed, err := d.Remove(); err != nil || !removed {
		t.Fatalf("Remove: %v, %v; want true, nil", removed, err)
	}
	if got := tables(); got[render.TableName] || !got["firewall"] {
		t.Errorf("tables after Remove: %v, want firewall only", got)
	}
	if removed, err := d.Remove(); err != nil || removed {
		t.Errorf("second Remove: %v, %v; want false, nil", removed, err)
	}
	if _, err := d.Apply(nil); !errors.Is(err, dataplane.ErrNotSynced) {
		t.Errorf("Apply after Remove: %v, want ErrNotSynced", err)
	}
	if stats, err := d.Sync(view); err != nil || stats.Ops == 0 {
		t.Errorf("Sync after Remove: %d ops, %v; want the table programmed afresh", stats.Ops, err)
	}
	if got := tables(); !got[render.TableName] {
		t.Errorf("tables after a Sync that follows Remove: %v", got)
	}
}
