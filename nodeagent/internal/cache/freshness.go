package cache

import (
	"encoding/binary"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"
)

// bucketFreshness holds the freshness marker applied with the view
// (resource → resourceVersion, 8 bytes big-endian), written in the same
// transaction as the view. A file without it (written before it existed)
// holds no marker; the format is unchanged.
var bucketFreshness = []byte("freshness")

// Freshness is the freshness marker loaded with the view (by OpenView), or
// the last one set.
func (c *Cache) Freshness() map[string]uint64 { return maps.Clone(c.freshness) }

// SetFreshness sets the freshness marker the next Save or Replace writes
// with the view.
func (c *Cache) SetFreshness(m map[string]uint64) { c.freshness = maps.Clone(m) }

// putFreshness makes the freshness bucket hold exactly c.freshness.
func (c *Cache) putFreshness(tx *bolt.Tx) error {
	if tx.Bucket(bucketFreshness) != nil {
		if err := tx.DeleteBucket(bucketFreshness); err != nil {
			return fmt.Errorf("drop freshness: %w", err)
		}
	}
	if len(c.freshness) == 0 {
		return nil
	}
	b, err := tx.CreateBucket(bucketFreshness)
	if err != nil {
		return fmt.Errorf("freshness bucket: %w", err)
	}
	for r, rv := range c.freshness {
		if err := b.Put([]byte(r), binary.BigEndian.AppendUint64(nil, rv)); err != nil {
			return fmt.Errorf("freshness %s: %w", r, err)
		}
	}
	return nil
}

// decodeFreshness reads the freshness bucket; nil: none.
func decodeFreshness(b *bolt.Bucket) (map[string]uint64, error) {
	if b == nil {
		return nil, nil
	}
	out := map[string]uint64{}
	err := b.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("freshness %q: %d bytes, want 8", k, len(v))
		}
		out[string(k)] = binary.BigEndian.Uint64(v)
		return nil
	})
	return out, err
}
