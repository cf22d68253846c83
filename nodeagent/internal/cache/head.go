package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// keyHolding is the meta record of what the agent's Hello says of the
// view written with it (doormanv1.Holding: version, view and bucket
// digests), so that a start can open its stream while the view loads.
// It is trusted only for the version it names: a write that does not set
// it (an older agent's) leaves a record of another version. The format is
// unchanged.
var keyHolding = []byte("holding")

// SetHolding sets the holding the next Save or Replace writes with the
// view: that of the entries it leaves in the file (nil writes none).
func (c *Cache) SetHolding(h *doormanv1.Holding) {
	c.holding = nil
	if h != nil {
		c.holding = proto.Clone(h).(*doormanv1.Holding)
	}
}

// putHolding makes the meta record hold exactly c.holding.
func (c *Cache) putHolding(meta *bolt.Bucket) error {
	if c.holding == nil {
		return meta.Delete(keyHolding)
	}
	raw, err := proto.Marshal(c.holding)
	if err != nil {
		return fmt.Errorf("meta %s: %w", keyHolding, err)
	}
	if err := meta.Put(keyHolding, raw); err != nil {
		return fmt.Errorf("meta %s: %w", keyHolding, err)
	}
	return nil
}

// Head is what a cache file says of its view without reading the view.
type Head struct {
	Version uint64
	// Holding is what the Hello says of the view the file holds: empty
	// for a file that holds none, nil when the file does not record it
	// (written by an older agent, or the record is of another version).
	Holding *doormanv1.Holding
	// Confirmed is when a control plane last confirmed the view (see
	// Cache.Confirmed).
	Confirmed time.Time
}

// Opening is a cache file opened at start-up whose view is not read yet:
// its Head comes first, so that the agent can say what it holds while the
// view loads (Finish).
type Opening struct {
	path, node string
	c          *Cache // nil when the file could not be opened or its head read (err)
	err        error
	head       Head
}

// Begin opens the cache file at path and reads its Head. It fails only
// when another process holds the file (ErrLocked); any other failure is
// Finish's to handle.
func Begin(path, node string) (*Opening, error) {
	c, err := Open(path, node)
	if errors.Is(err, ErrLocked) {
		return nil, err
	}
	o := &Opening{path: path, node: node, c: c, err: err}
	if err == nil {
		if o.head, o.err = c.readHead(); o.err != nil {
			_ = c.Close()
			o.c = nil
		}
	}
	return o, nil
}

// Head is the file's head; the zero Head (Holding nil) when it could not
// be read.
func (o *Opening) Head() Head { return o.head }

// Finish restores the view the file holds, as OpenView does.
func (o *Opening) Finish() (*Cache, *state.View, *Reset, error) {
	view, cause := (*state.View)(nil), o.err
	if cause == nil {
		if view, cause = o.c.restore(); cause == nil {
			if err := o.c.remap(); err != nil {
				return nil, nil, nil, err
			}
			return o.c, view, nil, nil
		}
		_ = o.c.Close()
	}
	return setAside(o.path, o.node, cause)
}

// readHead reads the meta record: a file never written holds nothing.
func (c *Cache) readHead() (h Head, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			h, err = Head{}, fmt.Errorf("read cache %s: corrupt file: %v", c.db.Path(), r)
		}
	}()
	err = c.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			h.Holding = &doormanv1.Holding{}
			return nil
		}
		version, err := c.ownVersion(meta)
		if err != nil {
			return err
		}
		h.Version = version
		if raw := meta.Get(keyConfirmed); len(raw) == 8 {
			h.Confirmed = time.Unix(0, int64(binary.BigEndian.Uint64(raw)))
		}
		h.Holding = decodeHolding(meta.Get(keyHolding), version)
		return nil
	})
	if err != nil {
		return Head{}, fmt.Errorf("read cache %s: %w", c.db.Path(), err)
	}
	return h, nil
}

// decodeHolding decodes a holding record, nil unless it is one of version
// (or of a file that holds nothing) with every bucket's digest.
func decodeHolding(raw []byte, version uint64) *doormanv1.Holding {
	if version == 0 {
		return &doormanv1.Holding{}
	}
	if raw == nil {
		return nil
	}
	h := &doormanv1.Holding{}
	if err := proto.Unmarshal(raw, h); err != nil || h.GetVersion() != version || len(h.GetBucketDigests()) != doormanv1.Buckets {
		return nil
	}
	return h
}
