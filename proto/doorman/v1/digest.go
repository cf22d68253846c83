package doormanv1

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Buckets is how many buckets a view's keys are spread over for resume: an
// agent reports one digest per bucket, and the control plane re-sends only
// the buckets whose digest differs from its own.
const Buckets = 1024

// NodeKey is the key of the Node entry in every view.
const NodeKey = "node"

// Bucket returns the bucket a key belongs to.
func Bucket(key string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return h.Sum32() % Buckets
}

// ValueDigest is the digest of an entry's value: the first 8 bytes of the
// SHA-256 of its deterministic encoding. The control plane computes it once
// per distinct value and sends it inside the Entry.
func ValueDigest(m proto.Message) (uint64, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return 0, err
	}
	return bytesDigest(b), nil
}

// bytesDigest is the first 8 bytes of the SHA-256 of b.
func bytesDigest(b []byte) uint64 {
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// The Entry's value fields, by number (view.proto; a test holds them to
// the descriptor).
const (
	entryServicePortField protowire.Number = 3
	entryNodeField        protowire.Number = 4
)

// encodedDigest is ValueDigest of m, the value an Entry encoded as raw
// holds in field num: want when raw holds the value in that one field
// (no other occurrence of it or of the other value field, which would
// be merged into it or replace it) and those bytes hash to want, else the
// digest of m encoded again (raw nil: no encoding at hand).
func encodedDigest(m proto.Message, raw []byte, num protowire.Number, want uint64) (uint64, error) {
	if b, ok := onlyValueField(raw, num); ok && bytesDigest(b) == want {
		return want, nil
	}
	return ValueDigest(m)
}

// onlyValueField returns the bytes of field num of the Entry encoded as
// raw when that is the one value field raw holds, once.
func onlyValueField(raw []byte, num protowire.Number) (value []byte, ok bool) {
	seen := 0
	for len(raw) > 0 {
		n, typ, l := protowire.ConsumeTag(raw)
		if l < 0 {
			return nil, false
		}
		raw = raw[l:]
		if n == entryServicePortField || n == entryNodeField {
			if seen++; seen > 1 || n != num || typ != protowire.BytesType {
				return nil, false
			}
			b, l := protowire.ConsumeBytes(raw)
			if l < 0 {
				return nil, false
			}
			value, raw = b, raw[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, raw)
		if l < 0 {
			return nil, false
		}
		raw = raw[l:]
	}
	return value, seen == 1
}

// EntryHash mixes a key with its value digest, so that the same value under
// two keys, or two values under one key, hash apart. Bucket and view
// digests are XORs of these.
func EntryHash(key string, digest uint64) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	x := h.Sum64() ^ digest
	// splitmix64 finaliser: spreads the bits of the XOR.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Digests keeps a view's bucket digests and view digest up to date in O(1)
// per entry: each is the XOR of the hashes of the entries it covers, so an
// entry is added and removed by the same operation, in any order.
// The zero value is an empty view.
type Digests struct {
	buckets [Buckets]uint64
	view    uint64
}

// Toggle adds the entry (key, digest) when it is absent and removes it when
// it is present.
func (d *Digests) Toggle(key string, digest uint64) {
	h := EntryHash(key, digest)
	d.buckets[Bucket(key)] ^= h
	d.view ^= h
}

// View is the digest of the whole view.
func (d *Digests) View() uint64 { return d.view }

// Bucket is the digest of one bucket.
func (d *Digests) Bucket(i uint32) uint64 { return d.buckets[i] }

// BucketList returns all bucket digests, in bucket order, as Holding carries
// them.
func (d *Digests) BucketList() []uint64 {
	out := make([]uint64, Buckets)
	copy(out, d.buckets[:])
	return out
}
