package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyKernelMark is the meta record of what the kernel held when the view
// was written (the dataplane's encoded Mark: nftables generation, table
// handle, elements digest), written in the same transaction as the view.
// The cache does not read it; the dataplane trusts it only while the
// kernel is still at that generation and the view renders to those
// elements. A file without it (written before it existed) holds no mark;
// the format is unchanged.
var keyKernelMark = []byte("kernel-mark")

// KernelMark is the mark loaded with the view (by OpenView), or the last
// one set; nil: none.
func (c *Cache) KernelMark() []byte { return bytes.Clone(c.kernelMark) }

// SetKernelMark sets the mark the next Save or Replace writes with the
// view; nil writes none.
func (c *Cache) SetKernelMark(m []byte) { c.kernelMark = bytes.Clone(m) }

// SaveKernelMark writes the mark alone, for the view of version already
// written (after the start-up Sync of the cached view). A file that holds
// no view, or another version (an update written since brought its own
// mark), is left as it is. The mark the next Save or Replace writes is
// not changed: SaveKernelMark may run beside them.
func (c *Cache) SaveKernelMark(version uint64, m []byte) error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		if v := meta.Get(keyVersion); len(v) != 8 || binary.BigEndian.Uint64(v) != version {
			return nil
		}
		if len(m) == 0 {
			return meta.Delete(keyKernelMark)
		}
		return meta.Put(keyKernelMark, m)
	})
	if err != nil {
		return fmt.Errorf("save kernel mark in cache %s: %w", c.db.Path(), err)
	}
	return nil
}

// putKernelMark makes the meta record hold exactly c.kernelMark.
func (c *Cache) putKernelMark(meta *bolt.Bucket) error {
	if len(c.kernelMark) == 0 {
		return meta.Delete(keyKernelMark)
	}
	if err := meta.Put(keyKernelMark, c.kernelMark); err != nil {
		return fmt.Errorf("meta %s: %w", keyKernelMark, err)
	}
	return nil
}
