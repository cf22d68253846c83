package state

import (
	"fmt"
	"strings"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestRestoreMany restores more entries than Restore validates on one
// CPU: a valid view gives every entry and the digest of them all; with
// invalid entries anywhere in the list, the error names the first by key,
// whatever the order of the list.
func TestRestoreMany(t *testing.T) {
	n := 3 * parallelFrom
	entries := make([]*doormanv1.Entry, 0, n)
	for i := range n {
		entries = append(entries, servicePort(t, "default", fmt.Sprintf("web-%05d", i), nil, "10.244.1.1"))
	}
	v, err := Restore(7, entries)
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != n || v.Digest() != digestOf(entries...) || v.Version() != 7 {
		t.Errorf("restored %d entries, digest %x, version %d; want %d, %x, 7", v.Len(), v.Digest(), v.Version(), n, digestOf(entries...))
	}

	bad := func(e *doormanv1.Entry) *doormanv1.Entry {
		return &doormanv1.Entry{Key: e.GetKey(), Value: e.GetValue(), Digest: e.GetDigest() + 1}
	}
	first, later := entries[n/3].GetKey(), entries[n-1].GetKey()
	for name, order := range map[string][2]int{"later key first": {n - 1, n / 3}, "in key order": {n / 3, n - 1}} {
		t.Run(name, func(t *testing.T) {
			list := make([]*doormanv1.Entry, 0, n)
			list = append(list, bad(entries[order[0]]))
			for i, e := range entries {
				if i != order[0] && i != order[1] {
					list = append(list, e)
				}
			}
			list = append(list, bad(entries[order[1]]))
			_, err := Restore(7, list)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("entry %q", first)) {
				t.Errorf("Restore with %q and %q invalid: error %v, want one naming %q", first, later, err, first)
			}
		})
	}
}
