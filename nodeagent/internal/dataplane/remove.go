package dataplane

import (
	"fmt"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// Remove deletes doorman's table, and with it every chain, set, map and
// rule doorman put into the kernel, in one transaction (nft: `delete table
// inet doorman`). It reports whether there was a table to delete: a kernel
// without one is not an error, so Remove can run any number of times.
// Other tables are neither listed in full nor touched.
//
// After Remove the Dataplane knows nothing of the kernel: Apply refuses
// until the next Sync, which would program the table afresh.
func (d *Dataplane) Remove() (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	tables, err := d.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("remove table %s %s: list tables: %w", render.TableFamily, render.TableName, err)
	}
	found := false
	for _, t := range tables {
		if t.Name == render.TableName {
			found = true
		}
	}
	d.synced = false
	d.chains, d.chainUsers, d.owners, d.invalid = nil, nil, nil, nil
	if !found {
		return false, nil
	}
	d.conn.DelTable(d.table)
	if err := d.conn.Flush(); err != nil {
		// Deleted by someone else between the listing and now: gone all the
		// same.
		if isENOENT(err) {
			return false, nil
		}
		return false, fmt.Errorf("remove table %s %s: %w", render.TableFamily, render.TableName, err)
	}
	return true, nil
}
