package cache

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// The freshness marker set before a write is stored with the view and
// comes back with it after a restart; each write stores the marker set
// then, resources dropped included.
func TestFreshnessRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	reopen := func(c *Cache) *Cache {
		t.Helper()
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		c, _, reset, err := OpenView(path, "node-1")
		if err != nil || reset != nil {
			t.Fatalf("OpenView: %v (reset %+v)", err, reset)
		}
		return c
	}
	c, _, _, err := OpenView(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Freshness(); len(got) != 0 {
		t.Errorf("new file holds marker %v", got)
	}
	web := entry(t, "web", "10.244.1.1")
	c.SetFreshness(map[string]uint64{"services": 1 << 40, "endpointslices": 12, "nodes": 0})
	if err := c.Save(7, []state.Change{{Key: web.Key, New: web}}); err != nil {
		t.Fatal(err)
	}
	c = reopen(c)
	if diff := cmp.Diff(map[string]uint64{"services": 1 << 40, "endpointslices": 12, "nodes": 0}, c.Freshness()); diff != "" {
		t.Errorf("marker after Save and reopen (-want +got):\n%s", diff)
	}

	c.SetFreshness(map[string]uint64{"services": 1<<40 + 1})
	if err := c.Replace(8, map[string]*doormanv1.Entry{web.Key: web}); err != nil {
		t.Fatal(err)
	}
	c = reopen(c)
	if diff := cmp.Diff(map[string]uint64{"services": 1<<40 + 1}, c.Freshness()); diff != "" {
		t.Errorf("marker after Replace and reopen (-want +got):\n%s", diff)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// A file written before the marker existed holds none; a marker record of
// the wrong size is a corrupt file.
func TestFreshnessOldAndCorrupt(t *testing.T) {
	path := writeValid(t)
	c, view, reset, err := OpenView(path, "node-1")
	if err != nil || reset != nil {
		t.Fatalf("OpenView: %v (reset %+v)", err, reset)
	}
	if view.Version() != 7 || len(c.Freshness()) != 0 {
		t.Errorf("old file: version %d, marker %v; want 7 and none", view.Version(), c.Freshness())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucketFreshness)
		if err != nil {
			return err
		}
		return b.Put([]byte("services"), []byte{1, 2, 3})
	})
	c, _, reset, err = OpenView(path, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if reset == nil {
		t.Fatal("a marker record of 3 bytes was read, want the file set aside")
	}
}
