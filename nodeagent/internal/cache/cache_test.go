package cache

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// newEntries is n new entries svc-000000, svc-000001, … with two
// endpoints each, as the changes that add them.
func newEntries(t testing.TB, n int) []state.Change {
	t.Helper()
	changes := make([]state.Change, 0, n)
	for i := range n {
		e := entry(t, fmt.Sprintf("svc-%06d", i), "10.244.1.1", "10.244.1.2")
		changes = append(changes, state.Change{Key: e.Key, New: e})
	}
	return changes
}

func entry(t testing.TB, name string, endpoints ...string) *doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: name, PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80,
	}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 8080})
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

var sortEntries = cmpopts.SortSlices(func(a, b *doormanv1.Entry) bool { return a.GetKey() < b.GetKey() })

func TestSaveLoad(t *testing.T) {
	web := entry(t, "web", "10.244.1.1")
	web2 := entry(t, "web", "10.244.1.2")
	db := entry(t, "db", "10.244.2.1")
	dns := entry(t, "dns", "10.244.3.1")
	for _, tc := range []struct {
		name  string
		steps func(c *Cache) error
		want  *Snapshot
	}{
		{
			name:  "never written",
			steps: func(c *Cache) error { return nil },
			want:  &Snapshot{},
		},
		{
			name: "saves accumulate changes",
			steps: func(c *Cache) error {
				if err := c.Save(1, []state.Change{{Key: web.Key, New: web}, {Key: db.Key, New: db}}); err != nil {
					return err
				}
				return c.Save(2, []state.Change{{Key: web.Key, Old: web, New: web2}, {Key: db.Key, Old: db}, {Key: dns.Key, New: dns}})
			},
			want: &Snapshot{Node: "node-1", Version: 2, Entries: []*doormanv1.Entry{web2, dns}},
		},
		{
			name: "an empty update moves the version only",
			steps: func(c *Cache) error {
				if err := c.Save(1, []state.Change{{Key: web.Key, New: web}}); err != nil {
					return err
				}
				return c.Save(5, nil)
			},
			want: &Snapshot{Node: "node-1", Version: 5, Entries: []*doormanv1.Entry{web}},
		},
		{
			name: "replace drops what the view lacks",
			steps: func(c *Cache) error {
				if err := c.Save(1, []state.Change{{Key: web.Key, New: web}, {Key: db.Key, New: db}}); err != nil {
					return err
				}
				return c.Replace(3, map[string]*doormanv1.Entry{dns.Key: dns})
			},
			want: &Snapshot{Node: "node-1", Version: 3, Entries: []*doormanv1.Entry{dns}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := written(t, "node-1", tc.steps)
			c, err := Open(path, "node-1")
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			got, err := c.Load()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, protocmp.Transform(), sortEntries, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

// written returns the path of a new cache file for node that steps
// wrote, closed.
func written(t *testing.T, node string, steps func(c *Cache) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := Open(path, node)
	if err != nil {
		t.Fatal(err)
	}
	if err := steps(c); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeValid writes a cache file holding two entries and returns its path.
func writeValid(t *testing.T) string {
	t.Helper()
	web, db := entry(t, "web", "10.244.1.1"), entry(t, "db", "10.244.2.1")
	return written(t, "node-1", func(c *Cache) error {
		return c.Save(7, []state.Change{{Key: web.Key, New: web}, {Key: db.Key, New: db}})
	})
}

// rawUpdate edits the file through bbolt directly.
func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenView(t *testing.T) {
	web := entry(t, "web", "10.244.1.1")
	for _, tc := range []struct {
		name      string
		corrupt   func(t *testing.T, path string) // nil: leave the valid file
		node      string
		wantErr   string // the Reset's cause; "" = loads
		wantCount int
	}{
		{name: "valid", node: "node-1", wantCount: 2},
		{name: "missing file", node: "node-1", corrupt: func(t *testing.T, path string) { _ = os.Remove(path) }},
		{name: "garbage bytes", node: "node-1", corrupt: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "open cache"},
		{name: "truncated", node: "node-1", corrupt: func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "open cache"},
		{name: "empty file", node: "node-1", corrupt: func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "another node", node: "node-2", wantErr: `written for node "node-1", not "node-2"`},
		{name: "record does not decode", node: "node-1", corrupt: func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEntries).Put([]byte(web.Key), []byte{0xff, 0xff, 0xff})
			})
		}, wantErr: `record "default/web:http/tcp/ipv4"`},
		{name: "record under another key", node: "node-1", corrupt: func(t *testing.T, path string) {
			raw, _ := proto.Marshal(web)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEntries).Put([]byte("default/other:http/tcp/ipv4"), raw)
			})
		}, wantErr: `record "default/other:http/tcp/ipv4" holds the entry "default/web:http/tcp/ipv4"`},
		{name: "record fails validation", node: "node-1", corrupt: func(t *testing.T, path string) {
			bad := proto.Clone(web).(*doormanv1.Entry)
			bad.Digest++
			raw, _ := proto.Marshal(bad)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(web.Key), raw) })
		}, wantErr: `entry "default/web:http/tcp/ipv4": digest`},
		{name: "record with its digest fails validation", node: "node-1", corrupt: func(t *testing.T, path string) {
			bad := proto.Clone(web).(*doormanv1.Entry)
			bad.GetServicePort().ClusterIp = "::ffff:10.96.0.10"
			var err error
			if bad.Digest, err = doormanv1.ValueDigest(bad.GetServicePort()); err != nil {
				t.Fatal(err)
			}
			raw, _ := proto.Marshal(bad)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put([]byte(web.Key), raw) })
		}, wantErr: `entry "default/web:http/tcp/ipv4": cluster IP`},
		{name: "other format", node: "node-1", corrupt: func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, 99))
			})
		}, wantErr: "meta: format 99"},
		{name: "entries without meta", node: "node-1", corrupt: func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketMeta) })
		}, wantErr: "entries without a meta record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeValid(t)
			if tc.corrupt != nil {
				tc.corrupt(t, path)
			}
			c, view, reset, err := OpenView(path, tc.node)
			if err != nil {
				t.Fatalf("OpenView: %v", err)
			}
			defer func() { _ = c.Close() }()
			if tc.wantErr == "" {
				if reset != nil {
					t.Fatalf("file set aside: %v", reset.Cause)
				}
				if view.Len() != tc.wantCount {
					t.Fatalf("view holds %d entries, want %d", view.Len(), tc.wantCount)
				}
				return
			}
			if reset == nil || !strings.Contains(reset.Cause.Error(), tc.wantErr) {
				t.Fatalf("reset = %+v, want a cause containing %q", reset, tc.wantErr)
			}
			if reset.Aside != path+".corrupt-1" {
				t.Errorf("set aside to %q, want %q", reset.Aside, path+".corrupt-1")
			}
			if _, err := os.Stat(reset.Aside); err != nil {
				t.Errorf("set-aside file: %v", err)
			}
			if view.Len() != 0 || view.Version() != 0 {
				t.Errorf("view after reset holds %d entries at version %d, want empty", view.Len(), view.Version())
			}
			// The fresh file works.
			if err := c.Save(1, []state.Change{{Key: web.Key, New: web}}); err != nil {
				t.Fatalf("save into the fresh file: %v", err)
			}
		})
	}
}

func TestSetAsideNumbers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	for i, want := range []string{".corrupt-1", ".corrupt-2", ".corrupt-3"} {
		if err := os.WriteFile(path, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := SetAside(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != path+want {
			t.Errorf("SetAside #%d = %q, want %q", i, got, path+want)
		}
	}
	if got, err := SetAside(path); err != nil || got != "" {
		t.Errorf("SetAside of a missing file = %q, %v; want \"\", nil", got, err)
	}
}

// FuzzDecodeEntry: no record, however malformed, panics the decoder, and
// what it accepts carries the record's key.
func FuzzDecodeEntry(f *testing.F) {
	web := entry(f, "web", "10.244.1.1")
	raw, _ := proto.Marshal(web)
	f.Add([]byte(web.Key), raw)
	f.Add([]byte("x"), []byte{0x0a, 0x01, 'x'})
	f.Add([]byte(""), []byte{0xff})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		e, err := DecodeEntry(key, value)
		if err != nil {
			return
		}
		if e.GetKey() != string(key) {
			t.Fatalf("decoded entry %q under key %q", e.GetKey(), key)
		}
		_ = doormanv1.ValidateEntry(e) // must not panic on whatever the decoder accepts
	})
}

// FuzzDecodeMeta: the meta decoder accepts only well-sized fields of this
// format.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint32(nil, FormatVersion), binary.BigEndian.AppendUint64(nil, 7), []byte("node-1"))
	f.Add([]byte{1}, []byte{2}, []byte{})
	f.Fuzz(func(t *testing.T, format, version, node []byte) {
		name, v, err := DecodeMeta(format, version, node)
		if err != nil {
			return
		}
		if name != string(node) || v != binary.BigEndian.Uint64(version) || binary.BigEndian.Uint32(format) != FormatVersion {
			t.Fatalf("DecodeMeta(%x, %x, %q) = %q, %d", format, version, node, name, v)
		}
	})
}
