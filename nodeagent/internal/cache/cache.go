package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// FormatVersion is the layout of the file this package writes. A file of
// another format is not read.
const FormatVersion = 1

var (
	bucketEntries = []byte("entries")
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
	keyVersion    = []byte("version")
	keyNode       = []byte("node")
	// keyConfirmed: when a control plane last confirmed the view (Unix
	// nanoseconds, big-endian): written with every update and by Confirm.
	keyConfirmed = []byte("confirmed")
)

// ErrLocked: another process (an agent that has not exited yet) holds the
// file's lock longer than the open waits. The file is not corrupt: the
// caller tries again or goes on without the cache.
var ErrLocked = errors.New("cache file locked by another process")

// lockTimeout bounds the wait for the file lock held by another process
// (e.g. an agent that has not exited yet).
var lockTimeout = 5 * time.Second

// Cache is an open cache file. Its reads and writes (Load, Save, Replace,
// Confirm, Confirmed, Clear) may run concurrently, as bbolt serialises
// them; Close may not run with any of them.
type Cache struct {
	db   *bolt.DB
	node string
	now  func() time.Time
	// freshness is the marker loaded with the view, then the one the next
	// write stores (see freshness.go).
	freshness map[string]uint64
	// kernelMark is the mark loaded with the view, then the one the next
	// write stores (see kernelmark.go).
	kernelMark []byte
	// holding is what the next write records the view's Hello says (see
	// head.go); nil: none.
	holding *doormanv1.Holding
}

// Snapshot is what a cache file holds.
type Snapshot struct {
	Node    string
	Version uint64
	Entries []*doormanv1.Entry
	// Freshness is the freshness marker applied with the view; nil: none.
	Freshness map[string]uint64
	// KernelMark is what the kernel held when the view was written (see
	// SetKernelMark); nil: none.
	KernelMark []byte
}

// Open opens the cache file at path, creating it when missing, for the node
// named node.
func Open(path, node string) (c *Cache, err error) {
	// bbolt maps the file: reading a page past the end of a truncated file
	// faults (SIGBUS). Make that a panic, recovered below, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("open cache %s: corrupt file: %v", path, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open cache %s: %w (waited %s)", path, ErrLocked, lockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", path, err)
	}
	return &Cache{db: db, node: node, now: time.Now}, nil
}

// remap closes the file and opens it again. Load reads every page of the
// file through bbolt's memory map, and those pages count in the agent's
// resident memory for as long as the mapping lives (about 4 MiB at 10,000
// Services, 40 at 100,000), while a Save touches only a few: a fresh
// mapping holds none of them.
func (c *Cache) remap() error {
	path := c.db.Path()
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("reopen cache %s: %w", path, err)
	}
	fresh, err := Open(path, c.node)
	if err != nil {
		return fmt.Errorf("reopen cache: %w", err)
	}
	c.db = fresh.db
	return nil
}

// Path is the file's path.
func (c *Cache) Path() string { return c.db.Path() }

// Close closes the file.
func (c *Cache) Close() error { return c.db.Close() }

// Load reads the whole file back. A file that was never written gives an
// empty Snapshot at version 0. A file written for another node, of another
// format, or holding a record that does not decode gives an error.
func (c *Cache) Load() (s *Snapshot, err error) { return c.load(nil) }

// load is Load, checking each entry with check, given its record, as it is
// decoded (nil: not checked).
func (c *Cache) load(check func(e *doormanv1.Entry, record []byte) error) (s *Snapshot, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("load cache %s: corrupt file: %v", c.db.Path(), r)
		}
	}()
	s = &Snapshot{}
	err = c.db.View(func(tx *bolt.Tx) error {
		meta, entries := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		if meta == nil {
			if entries != nil {
				return errors.New("entries without a meta record")
			}
			return nil
		}
		version, err := c.ownVersion(meta)
		if err != nil {
			return err
		}
		s.Node, s.Version = c.node, version
		if m := meta.Get(keyKernelMark); len(m) > 0 {
			s.KernelMark = bytes.Clone(m)
		}
		if s.Freshness, err = decodeFreshness(tx.Bucket(bucketFreshness)); err != nil {
			return err
		}
		if entries == nil {
			return nil
		}
		s.Entries, err = decodeEntries(entries, check)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load cache %s: %w", c.db.Path(), err)
	}
	return s, nil
}

// parallelFrom is the number of records from which Load decodes them on
// every CPU: at 100,000 records decoding is a good part of an agent's
// start-up.
const parallelFrom = 1000

// decodeEntries decodes every record of the bucket, in key order, and
// checks each entry with check (nil: none); the error is the first
// record's, by key, that does not decode or pass. The records stay valid
// only during the transaction: they are decoded within it.
func decodeEntries(b *bolt.Bucket, check func(e *doormanv1.Entry, record []byte) error) ([]*doormanv1.Entry, error) {
	// The count from the pages' headers (a walk of them, which the
	// records' walk faults in anyway) spares growing two lists of 100,000
	// records one copy after another.
	n := b.Stats().KeyN
	keys, values := make([][]byte, 0, n), make([][]byte, 0, n)
	err := b.ForEach(func(k, v []byte) error {
		keys, values = append(keys, k), append(values, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]*doormanv1.Entry, len(keys))
	errs := make([]error, len(keys))
	decode := func(from, to int) {
		// A page past the end of a truncated file faults here too: see
		// Load.
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				errs[from] = fmt.Errorf("corrupt file: %v", r)
			}
		}()
		for i := from; i < to; i++ {
			out[i], errs[i] = DecodeEntry(keys[i], values[i])
			if errs[i] == nil && check != nil {
				errs[i] = check(out[i], values[i])
			}
		}
	}
	if len(keys) < parallelFrom {
		decode(0, len(keys))
	} else {
		var g errgroup.Group
		workers := runtime.GOMAXPROCS(0)
		for w := range workers {
			g.Go(func() error {
				decode(w*len(keys)/workers, (w+1)*len(keys)/workers)
				return nil
			})
		}
		_ = g.Wait()
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// releaseAfterRecords is the number of records one transaction writes from
// which the cache hands the memory of its pages back to the OS. bbolt keeps
// the buffer of every single page it writes in a sync.Pool, which only two
// garbage collections empty: after the first write of a 10,000-Service view
// that is about 4 MiB, held for as long as the agent's little steady-state
// garbage takes to bring two collections (minutes). Such writes are rare
// (the first update, a resume, Replace), so two more collections are cheap.
const releaseAfterRecords = 1000

// release returns the page buffers of a transaction of that many records
// to the OS.
func release(records int) {
	if records < releaseAfterRecords {
		return
	}
	runtime.GC()         // the pool's buffers move to its victim cache,
	debug.FreeOSMemory() // which this collection empties
}

// Save records an applied update: the new version and only the keys it
// changed, in one transaction.
func (c *Cache) Save(version uint64, changes []state.Change) error {
	defer release(len(changes))
	err := c.db.Update(func(tx *bolt.Tx) error {
		entries, err := c.prepare(tx, version)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			if ch.New == nil {
				if err := entries.Delete([]byte(ch.Key)); err != nil {
					return fmt.Errorf("delete %q: %w", ch.Key, err)
				}
				continue
			}
			if err := putEntry(entries, ch.New); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save cache version %d: %w", version, err)
	}
	return nil
}

// Replace makes the file hold exactly the view, in one transaction. Used
// when a Save failed and the file may lag behind.
func (c *Cache) Replace(version uint64, view map[string]*doormanv1.Entry) error {
	defer release(len(view))
	err := c.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEntries) != nil {
			if err := tx.DeleteBucket(bucketEntries); err != nil {
				return fmt.Errorf("drop entries: %w", err)
			}
		}
		entries, err := c.prepare(tx, version)
		if err != nil {
			return err
		}
		// In key order: bbolt inserts each key into a sorted page, and
		// random order makes a large first write quadratic.
		for _, key := range slices.Sorted(maps.Keys(view)) {
			if err := putEntry(entries, view[key]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replace cache version %d: %w", version, err)
	}
	return nil
}

// prepare writes the meta record and returns the entries bucket.
func (c *Cache) prepare(tx *bolt.Tx, version uint64) (*bolt.Bucket, error) {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return nil, fmt.Errorf("meta bucket: %w", err)
	}
	format, v := make([]byte, 4), make([]byte, 8)
	binary.BigEndian.PutUint32(format, FormatVersion)
	binary.BigEndian.PutUint64(v, version)
	for k, val := range map[string][]byte{string(keyFormat): format, string(keyVersion): v, string(keyNode): []byte(c.node), string(keyConfirmed): c.stamp()} {
		if err := meta.Put([]byte(k), val); err != nil {
			return nil, fmt.Errorf("meta %s: %w", k, err)
		}
	}
	if err := c.putFreshness(tx); err != nil {
		return nil, err
	}
	if err := c.putKernelMark(meta); err != nil {
		return nil, err
	}
	if err := c.putHolding(meta); err != nil {
		return nil, err
	}
	entries, err := tx.CreateBucketIfNotExists(bucketEntries)
	if err != nil {
		return nil, fmt.Errorf("entries bucket: %w", err)
	}
	return entries, nil
}

// stamp is the time now as the confirmed field holds it.
func (c *Cache) stamp() []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(c.now().UnixNano()))
	return b
}

// Confirmed is when a control plane last confirmed the view the file
// holds: the last update written, or the last Confirm. Zero when the file
// holds no view or does not say (written by an older agent).
func (c *Cache) Confirmed() (time.Time, error) {
	var t time.Time
	err := c.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		raw := meta.Get(keyConfirmed)
		if len(raw) != 8 {
			return nil
		}
		t = time.Unix(0, int64(binary.BigEndian.Uint64(raw)))
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("read cache %s: %w", c.db.Path(), err)
	}
	return t, nil
}

// Confirm records that a control plane confirmed the view now (the agent
// is connected and up to date), without touching the view. A file that
// holds no view is left as it is.
func (c *Cache) Confirm() error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		return meta.Put(keyConfirmed, c.stamp())
	})
	if err != nil {
		return fmt.Errorf("confirm cache %s: %w", c.db.Path(), err)
	}
	return nil
}

// Clear empties the file: it then holds no view, as a new one, and the
// next Save starts it again. For a view too old to use.
func (c *Cache) Clear() error {
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketMeta} {
			if tx.Bucket(b) == nil {
				continue
			}
			if err := tx.DeleteBucket(b); err != nil {
				return fmt.Errorf("drop %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("clear cache %s: %w", c.db.Path(), err)
	}
	return nil
}

func putEntry(b *bolt.Bucket, e *doormanv1.Entry) error {
	raw, err := proto.Marshal(e)
	if err != nil {
		return fmt.Errorf("marshal %q: %w", e.GetKey(), err)
	}
	if err := b.Put([]byte(e.GetKey()), raw); err != nil {
		return fmt.Errorf("put %q: %w", e.GetKey(), err)
	}
	return nil
}

// DecodeEntry decodes one entry record: the value must unmarshal to an Entry
// whose key is the record's key.
func DecodeEntry(key, value []byte) (*doormanv1.Entry, error) {
	e := &doormanv1.Entry{}
	if err := proto.Unmarshal(value, e); err != nil {
		return nil, fmt.Errorf("record %q: %w", key, err)
	}
	if e.GetKey() != string(key) {
		return nil, fmt.Errorf("record %q holds the entry %q", key, e.GetKey())
	}
	return e, nil
}

// DecodeMeta decodes the meta record's fields.
func DecodeMeta(format, version, node []byte) (nodeName string, v uint64, err error) {
	if len(format) != 4 {
		return "", 0, fmt.Errorf("meta: format field of %d bytes", len(format))
	}
	if f := binary.BigEndian.Uint32(format); f != FormatVersion {
		return "", 0, fmt.Errorf("meta: format %d, this agent reads %d", f, FormatVersion)
	}
	if len(version) != 8 {
		return "", 0, fmt.Errorf("meta: version field of %d bytes", len(version))
	}
	if len(node) == 0 {
		return "", 0, errors.New("meta: no node name")
	}
	return string(node), binary.BigEndian.Uint64(version), nil
}

// KeptAside is how many set-aside copies of an unreadable file are kept:
// enough to look into a repeated failure, not a disk filled by a crash
// loop.
const KeptAside = 3

// SetAside renames the file at path to path.corrupt-<n>, n one more than
// the highest in use, and returns the new name. A missing file is not an
// error.
func SetAside(path string) (string, error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	numbers, err := asideNumbers(path)
	if err != nil {
		return "", fmt.Errorf("set aside %s: %w", path, err)
	}
	n := 1
	if len(numbers) > 0 {
		n = numbers[len(numbers)-1] + 1
	}
	aside := path + ".corrupt-" + strconv.Itoa(n)
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("set aside %s: %w", path, err)
	}
	return aside, nil
}

// PruneAside deletes the set-aside copies of path but the newest keep
// (highest numbers) and returns the names it deleted.
func PruneAside(path string, keep int) ([]string, error) {
	numbers, err := asideNumbers(path)
	if err != nil {
		return nil, fmt.Errorf("prune set-aside copies of %s: %w", path, err)
	}
	var removed []string
	var errs []error
	for _, n := range numbers[:max(0, len(numbers)-keep)] {
		name := path + ".corrupt-" + strconv.Itoa(n)
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// asideNumbers returns the numbers of path's set-aside copies, ascending.
func asideNumbers(path string) ([]int, error) {
	matches, err := filepath.Glob(globEscape(path) + ".corrupt-*")
	if err != nil {
		return nil, err
	}
	prefix := path + ".corrupt-"
	var numbers []int
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(m, prefix))
		if err == nil && n > 0 {
			numbers = append(numbers, n)
		}
	}
	slices.Sort(numbers)
	return numbers, nil
}

// Reset says why a cache file was set aside.
type Reset struct {
	Aside string // where the unreadable file now is; "" if it could not be moved
	Cause error
	// Removed are older set-aside copies deleted (KeptAside are kept);
	// PruneErr is why some could not be.
	Removed  []string
	PruneErr error
}

// OpenView opens the cache at path and restores the view it holds. A file
// that cannot be opened, read or validated is set aside and a fresh one
// started with an empty view; the Reset says so, and only the newest
// KeptAside copies are kept. The error is non-nil only when no cache file
// can be opened at all; a file locked by another process (ErrLocked) is
// not set aside.
func OpenView(path, node string) (*Cache, *state.View, *Reset, error) {
	o, err := Begin(path, node)
	if err != nil {
		return nil, nil, nil, err
	}
	return o.Finish()
}

// setAside sets aside the file at path, which could not be used for
// cause, and opens a fresh one.
func setAside(path, node string, cause error) (*Cache, *state.View, *Reset, error) {
	reset := &Reset{Cause: cause}
	aside, err := SetAside(path)
	if err != nil {
		return nil, nil, reset, fmt.Errorf("%w (after: %w)", err, cause)
	}
	reset.Aside = aside
	reset.Removed, reset.PruneErr = PruneAside(path, KeptAside)
	c, err := Open(path, node)
	if err != nil {
		return nil, nil, reset, err
	}
	return c, state.New(), reset, nil
}

// restore loads the file's view (with its freshness marker and kernel
// mark). Each entry is validated as it is decoded, on its record's bytes
// (see doormanv1.ValidateEncodedEntry).
func (c *Cache) restore() (*state.View, error) {
	s, err := c.load(doormanv1.ValidateEncodedEntry)
	if err != nil {
		return nil, err
	}
	c.freshness = s.Freshness
	c.kernelMark = s.KernelMark
	view, err := state.RestoreValid(s.Version, s.Entries)
	if err != nil {
		return nil, fmt.Errorf("load cache %s: %w", c.db.Path(), err)
	}
	return view, nil
}

// ownVersion decodes the meta record's version, refusing a record of
// another format or written for another node.
func (c *Cache) ownVersion(meta *bolt.Bucket) (uint64, error) {
	node, version, err := DecodeMeta(meta.Get(keyFormat), meta.Get(keyVersion), meta.Get(keyNode))
	if err != nil {
		return 0, err
	}
	if node != c.node {
		return 0, fmt.Errorf("written for node %q, not %q", node, c.node)
	}
	return version, nil
}
