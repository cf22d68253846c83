package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Field numbers of doorman.v1.Entry and doorman.v1.SyncResponse.
const (
	entryKey         protowire.Number = 1
	entryDigest      protowire.Number = 2
	entryServicePort protowire.Number = 3
	entryNode        protowire.Number = 4

	respVersion         protowire.Number = 1
	respFull            protowire.Number = 2
	respReplacedBuckets protowire.Number = 3
	respUpserts         protowire.Number = 4
	respRemovals        protowire.Number = 5
	respViewDigest      protowire.Number = 6
	respFreshness       protowire.Number = 7
	respTrigger         protowire.Number = 8

	// Fields of a map entry, and of doorman.v1.ResourceVersions.
	mapKey          protowire.Number = 1
	mapValue        protowire.Number = 2
	versionsSeen    protowire.Number = 1
	versionsChanged protowire.Number = 2
)

// Versions is how far the control plane has read one resource
// (doorman.v1.ResourceVersions).
type Versions struct {
	// Seen is the highest resourceVersion seen (lists, events, bookmarks).
	Seen uint64
	// Changed is the highest resourceVersion of a change (an add, update
	// or delete event, or a list).
	Changed uint64
}

// Entry is one view entry, encoded once. It is immutable.
type Entry struct {
	Key    string
	Digest uint64
	// Bytes is the encoding of the doorman.v1.Entry message.
	Bytes []byte
	// Hash is the entry's contribution to bucket and view digests (see
	// doormanv1.Digests).
	Hash uint64
	// Trigger is the value's trigger time (ServicePort's
	// trigger_time_unix_nano: its EndpointSlices' last change), for the
	// latency metrics; 0: none.
	Trigger int64
	// TriggerOutside: Bytes do not carry Trigger (a port sent by node or
	// a shard); the update that sends the entry does.
	TriggerOutside bool
}

// ServicePort encodes a ServicePort entry under its key.
func ServicePort(sp *doormanv1.ServicePort) (*Entry, error) {
	e, err := encode(doormanv1.ServicePortKey(sp), entryServicePort, sp)
	if err != nil {
		return nil, err
	}
	e.Trigger = sp.GetTriggerTimeUnixNano()
	return e, nil
}

// Node encodes the node entry.
func Node(n *doormanv1.Node) (*Entry, error) {
	return encode(doormanv1.NodeKey, entryNode, n)
}

// encode marshals the value once, deterministically: the same bytes give
// the digest (as doormanv1.ValueDigest computes it) and the entry's wire
// form.
func encode(key string, field protowire.Number, value proto.Message) (*Entry, error) {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("encode entry %s: %w", key, err)
	}
	sum := sha256.Sum256(v)
	digest := binary.BigEndian.Uint64(sum[:8])
	b := make([]byte, 0, len(key)+len(v)+24)
	b = protowire.AppendTag(b, entryKey, protowire.BytesType)
	b = protowire.AppendString(b, key)
	if digest != 0 {
		b = protowire.AppendTag(b, entryDigest, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, digest)
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	b = protowire.AppendBytes(b, v)
	return &Entry{Key: key, Digest: digest, Bytes: b, Hash: doormanv1.EntryHash(key, digest)}, nil
}

// Message decodes the entry (for Inspect; never on the send path).
func (e *Entry) Message() (*doormanv1.Entry, error) {
	m := &doormanv1.Entry{}
	if err := proto.Unmarshal(e.Bytes, m); err != nil {
		return nil, fmt.Errorf("decode entry %s: %w", e.Key, err)
	}
	return m, nil
}

// NewestTrigger returns the newest trigger time among an incremental
// update's upserts, or 0 (a full view brings every old one too).
func (u *Update) NewestTrigger() int64 {
	if u.Full {
		return 0
	}
	t := u.RemovedTrigger
	for _, e := range u.Upserts {
		t = max(t, e.Trigger)
	}
	return t
}

// OutsideTrigger returns the newest trigger time of an incremental
// update's upserts whose entries do not carry it, and of the shards it
// removes (SyncResponse's trigger_time_unix_nano), or 0.
func (u *Update) OutsideTrigger() int64 {
	if u.Full {
		return 0
	}
	t := u.RemovedTrigger
	for _, e := range u.Upserts {
		if e.TriggerOutside {
			t = max(t, e.Trigger)
		}
	}
	return t
}

// Update is one SyncResponse before encoding.
type Update struct {
	Version         uint64
	Full            bool
	ReplacedBuckets []uint32
	Upserts         []*Entry
	// Shared holds more upserts, encoded once for every node that holds
	// them alike (see Body); nil: none.
	Shared   *Body
	Removals []string
	// RemovedTrigger is the newest trigger time of the ports sent by node
	// whose shards Removals removes (the port's, which the removal
	// follows); 0: none.
	RemovedTrigger int64
	ViewDigest     uint64
	// Freshness is the control plane's marker (SyncResponse.freshness),
	// per watched resource.
	Freshness map[string]Versions
}

// Body is the encoding of many upserts (repeated SyncResponse.upserts
// fields), made once and sent as is in the full views of many nodes, so a
// full view does not copy the entries every node shares. It is immutable.
type Body struct {
	Bytes   []byte
	Entries int
}

// NewBody encodes entries as upserts, in the order given.
func NewBody(entries []*Entry) *Body {
	n := 0
	for _, e := range entries {
		n += len(e.Bytes) + 6
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = appendUpsert(b, e)
	}
	return &Body{Bytes: b, Entries: len(entries)}
}

func appendUpsert(b []byte, e *Entry) []byte {
	b = protowire.AppendTag(b, respUpserts, protowire.BytesType)
	return protowire.AppendBytes(b, e.Bytes)
}

// Frame is an encoded doorman.v1.SyncResponse, ready to be written to a
// stream as is.
type Frame struct {
	Bytes []byte
}

// Frame encodes the update by concatenating the entries' encodings; no
// entry is marshalled again.
func (u *Update) Frame() *Frame {
	return &Frame{Bytes: u.AppendFrame(make([]byte, 0, u.Size()))}
}

// Size is an upper bound of the length of the update's encoding.
func (u *Update) Size() int {
	if u.Shared == nil {
		return u.OwnSize()
	}
	return u.OwnSize() + len(u.Shared.Bytes)
}

// OwnSize is an upper bound of the length of AppendOwn's encoding.
func (u *Update) OwnSize() int {
	n := 44 + 6*len(u.ReplacedBuckets)
	for _, e := range u.Upserts {
		n += len(e.Bytes) + 6
	}
	for _, r := range u.Removals {
		n += len(r) + 4
	}
	for r := range u.Freshness {
		n += len(r) + 32
	}
	return n
}

// AppendFrame appends the update's encoding to b; with cap(b)-len(b) at
// least Size it does not allocate.
func (u *Update) AppendFrame(b []byte) []byte {
	b = u.AppendOwn(b)
	if u.Shared != nil {
		b = append(b, u.Shared.Bytes...)
	}
	return b
}

// AppendOwn appends the update's encoding without Shared to b: the fields
// of a message may come in any order, so Shared's bytes can follow as they
// are. With cap(b)-len(b) at least OwnSize it does not allocate.
func (u *Update) AppendOwn(b []byte) []byte {
	if u.Version != 0 {
		b = protowire.AppendTag(b, respVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, u.Version)
	}
	if u.Full {
		b = protowire.AppendTag(b, respFull, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if len(u.ReplacedBuckets) > 0 {
		size := 0
		for _, r := range u.ReplacedBuckets {
			size += protowire.SizeVarint(uint64(r))
		}
		b = protowire.AppendTag(b, respReplacedBuckets, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(size))
		for _, r := range u.ReplacedBuckets {
			b = protowire.AppendVarint(b, uint64(r))
		}
	}
	for _, e := range u.Upserts {
		b = appendUpsert(b, e)
	}
	for _, r := range u.Removals {
		b = protowire.AppendTag(b, respRemovals, protowire.BytesType)
		b = protowire.AppendString(b, r)
	}
	if u.ViewDigest != 0 {
		b = protowire.AppendTag(b, respViewDigest, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, u.ViewDigest)
	}
	b = appendFreshness(b, u.Freshness)
	if t := u.OutsideTrigger(); t != 0 {
		b = protowire.AppendTag(b, respTrigger, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(t))
	}
	return b
}

// Moved is the part of the marker now that differs from the marker held
// (what an agent holds from its stream): the resources whose versions
// moved or that held lacks. A resource held but missing from now (its
// resourceVersions stopped parsing) is not sent again: the agent keeps the
// versions it holds for it, which the control plane had seen.
func Moved(held, now map[string]Versions) map[string]Versions {
	var out map[string]Versions
	for r, v := range now {
		if h, ok := held[r]; ok && h == v {
			continue
		}
		if out == nil {
			out = map[string]Versions{}
		}
		out[r] = v
	}
	return out
}

// Merged is the marker an agent holds from its stream after an update
// carrying moved: held, with moved's resources replaced.
func Merged(held, moved map[string]Versions) map[string]Versions {
	out := maps.Clone(held)
	if out == nil {
		out = map[string]Versions{}
	}
	maps.Copy(out, moved)
	return out
}

// appendFreshness appends the marker's map entries, ordered by resource,
// as proto.Marshal's deterministic mode writes them.
func appendFreshness(b []byte, freshness map[string]Versions) []byte {
	for _, r := range slices.Sorted(maps.Keys(freshness)) {
		value := appendVersions(nil, freshness[r])
		b = protowire.AppendTag(b, respFreshness, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(1+protowire.SizeBytes(len(r))+1+protowire.SizeBytes(len(value))))
		b = protowire.AppendTag(b, mapKey, protowire.BytesType)
		b = protowire.AppendString(b, r)
		b = protowire.AppendTag(b, mapValue, protowire.BytesType)
		b = protowire.AppendBytes(b, value)
	}
	return b
}

func appendVersions(b []byte, v Versions) []byte {
	if v.Seen != 0 {
		b = protowire.AppendTag(b, versionsSeen, protowire.VarintType)
		b = protowire.AppendVarint(b, v.Seen)
	}
	if v.Changed != 0 {
		b = protowire.AppendTag(b, versionsChanged, protowire.VarintType)
		b = protowire.AppendVarint(b, v.Changed)
	}
	return b
}
