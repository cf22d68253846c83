package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
)

// Mark says what the kernel held after the dataplane's last commit: the
// nftables generation that commit made, the handle of doorman's table, and
// a digest of the table's elements. Every commit in the network namespace
// (to any table, by anyone) moves the generation on by one, so while the
// kernel is still at Generation nobody changed anything since. The zero
// Mark records nothing.
type Mark struct {
	Generation uint32
	Table      uint64
	Elements   uint64
}

// IsZero reports whether m records nothing.
func (m Mark) IsZero() bool { return m == Mark{} }

// markVersion is the first byte of an encoded Mark.
const markVersion = 1

// Encode returns m as the bytes the cache stores; nil for the zero Mark.
func (m Mark) Encode() []byte {
	if m.IsZero() {
		return nil
	}
	b := []byte{markVersion}
	b = binary.BigEndian.AppendUint32(b, m.Generation)
	b = binary.BigEndian.AppendUint64(b, m.Table)
	return binary.BigEndian.AppendUint64(b, m.Elements)
}

// DecodeMark reads an encoded Mark; anything else (nil, another version, a
// short record) gives the zero Mark: no record, the next Sync reads the
// table.
func DecodeMark(b []byte) Mark {
	if len(b) != 21 || b[0] != markVersion {
		return Mark{}
	}
	return Mark{
		Generation: binary.BigEndian.Uint32(b[1:]),
		Table:      binary.BigEndian.Uint64(b[5:]),
		Elements:   binary.BigEndian.Uint64(b[13:]),
	}
}

// ReadCheck says whether a Sync read the table's elements back, and why.
type ReadCheck string

const (
	// ReadSkipped: the kernel is still at the recorded generation, the
	// table has the recorded handle and the view renders to the recorded
	// elements: the kernel holds them, only the skeleton was read.
	ReadSkipped ReadCheck = "generation_unchanged"
	// ReadNoRecord: nothing recorded (first Sync, a cache written without
	// a mark, or the last commit's generation was not known to be own).
	ReadNoRecord ReadCheck = "no_record"
	// ReadGenerationChanged: someone committed since (to any table), or
	// the generation could not be read.
	ReadGenerationChanged ReadCheck = "generation_changed"
	// ReadTableChanged: doorman's table is missing or another one.
	ReadTableChanged ReadCheck = "table_changed"
	// ReadViewChanged: the view renders to other elements than those the
	// record describes.
	ReadViewChanged ReadCheck = "view_changed"
)

// Trust hands the next Sync a Mark recorded by an earlier process (the
// cache's): if the kernel still matches it, the Sync does not read the
// elements back.
func (d *Dataplane) Trust(m Mark) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.trusted = m
}

// A Witness sees the commits the dataplane does not make. Quiet reports
// whether it saw every commit after generation from up to and including
// generation to, and none of them touched doorman's table: the kernel at
// to still holds what it held at from. It may wait briefly for the events
// of commits the kernel already counts; when in doubt it says false.
type Witness interface {
	Quiet(from, to uint32) bool
}

// SetWitness lets w vouch for outside commits that leave doorman's table
// alone (commits to other tables, by the CNI, a firewall, Docker): while
// it does, the dataplane keeps its Mark across them, so the backstop
// resync and the Sync after them skip the read, and the cache's record
// stays valid. Without a witness any outside commit, to any table, makes
// the next Sync read the table back.
func (d *Dataplane) SetWitness(w Witness) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.witness = w
}

// current reports whether the kernel, at generation gen, still holds what
// d.known records: nobody committed since its generation, or the witness
// vouches for every commit since. It moves d.known on to gen. d.mu held.
func (d *Dataplane) current(gen uint32) bool {
	if gen == d.known.Generation {
		return true
	}
	if !d.vouched(d.known.Generation, gen) {
		return false
	}
	d.known.Generation = gen
	return true
}

// vouched reports whether the witness vouches for every commit after
// generation from up to gen.
func (d *Dataplane) vouched(from, gen uint32) bool {
	return d.witness != nil && d.witness.Quiet(from, gen)
}

// Mark returns what the kernel holds since the last own commit, or the
// zero Mark when that is not known (a foreign commit came in between, or
// the generation could not be read).
func (d *Dataplane) Mark() Mark {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.known
}

// Unchanged reports whether nobody committed to the kernel since the
// dataplane's own last commit (or Sync), or the witness vouches for every
// commit since: the kernel then holds what it programmed. False before a
// Sync, or when that is not known.
func (d *Dataplane) Unchanged() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.synced || d.known.IsZero() {
		return false
	}
	gen, err := d.generation()
	return err == nil && d.current(gen)
}

// checkGeneration decides, before the view is rendered, whether Sync may
// yet trust m instead of reading the elements: ReadSkipped when the
// kernel is still at m's generation (or the witness vouches for every
// commit since), and then checkView decides.
func (d *Dataplane) checkGeneration(m Mark, gen uint32, genErr error) ReadCheck {
	switch {
	case m.IsZero():
		return ReadNoRecord
	case genErr != nil || (gen != m.Generation && !d.vouched(m.Generation, gen)):
		return ReadGenerationChanged
	}
	return ReadSkipped
}

// checkView decides whether Sync may trust m, whose generation passed
// checkGeneration, for a view whose elements have this digest.
func (d *Dataplane) checkView(m Mark, digest uint64) ReadCheck {
	if digest != m.Elements {
		return ReadViewChanged
	}
	handle, err := d.tableHandle()
	if err != nil || handle == 0 || handle != m.Table {
		return ReadTableChanged
	}
	return ReadSkipped
}

// commit flushes the queued transaction and keeps d.known: only when the
// kernel was at the known generation before (or the witness vouches for
// the commits since) and is one further after is the commit surely the
// dataplane's own; otherwise the known Mark is dropped (a foreign commit
// may have come in between).
func (d *Dataplane) commit() error {
	if d.known.IsZero() {
		return d.conn.Flush()
	}
	before, berr := d.generation()
	kept := berr == nil && d.current(before)
	err := d.conn.Flush()
	after, aerr := d.generation()
	switch {
	case !kept || aerr != nil:
		d.known = Mark{}
	case err == nil && after == before+1:
		d.known.Generation = after
	case err != nil && after == before:
		// Refused: nothing changed.
	default:
		d.known = Mark{}
	}
	return err
}

// settle keeps d.known only when the kernel is still at its generation
// (or the witness vouches for the commits since).
func (d *Dataplane) settle() {
	if d.known.IsZero() {
		return
	}
	gen, err := d.generation()
	handle, herr := d.tableHandle()
	if err != nil || herr != nil || handle == 0 || !d.current(gen) {
		d.known = Mark{}
		return
	}
	d.known.Table = handle
}

func (d *Dataplane) nftRequest(msgType int, family uint8, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data := []byte{family, unix.NFNETLINK_V0, 0, 0}
	if len(attrs) > 0 {
		ae, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return nil, err
		}
		data = append(data, ae...)
	}
	return d.query.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType), Flags: netlink.Request},
		Data:   data,
	})
}

// generation asks the kernel for the current nftables generation
// (NFT_MSG_GETGEN).
func (d *Dataplane) generation() (uint32, error) {
	msgs, err := d.nftRequest(unix.NFT_MSG_GETGEN, unix.AF_UNSPEC, nil)
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, m := range msgs {
		if v, ok := u32Attr(m, unix.NFT_MSG_NEWGEN, unix.NFTA_GEN_ID); ok {
			return v, nil
		}
	}
	return 0, errors.New("get nftables generation: no answer")
}

// nftaTableHandle is NFTA_TABLE_HANDLE (linux/netfilter/nf_tables.h),
// which golang.org/x/sys does not define.
const nftaTableHandle = 4

// tableHandle returns the handle of doorman's table; 0 when there is none.
func (d *Dataplane) tableHandle() (uint64, error) {
	msgs, err := d.nftRequest(unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(render.TableName + "\x00")},
	})
	if isENOENT(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get table %s: %w", render.TableName, err)
	}
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWTABLE) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == nftaTableHandle {
				return ad.Uint64(), nil
			}
		}
		return 0, ad.Err()
	}
	return 0, errors.New("get table: no answer")
}

// u32Attr reads a 32-bit attribute of an nftables message of type msgType.
func u32Attr(m netlink.Message, msgType, attr int) (uint32, bool) {
	if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|msgType) || len(m.Data) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == uint16(attr) {
			return ad.Uint32(), true
		}
	}
	return 0, false
}

// elementsDigest is an order-free digest of a table's elements: the sum of
// their hashes, so that Apply keeps it with the elements it adds and
// deletes.
func elementsDigest(es []render.Element) uint64 {
	var sum uint64
	for i := range es {
		sum += elementHash(&es[i])
	}
	return sum
}

func elementHash(e *render.Element) uint64 {
	h := fnv.New64a()
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(b)
	}
	field([]byte(e.Set))
	field(e.Key)
	field(e.KeyEnd)
	field(e.Value)
	flags := []byte{0}
	if e.IntervalEnd {
		flags[0] = 1
	}
	field(flags)
	if e.Verdict != nil {
		field(binary.BigEndian.AppendUint32(nil, uint32(e.Verdict.Kind)))
		field([]byte(e.Verdict.Chain))
	}
	return h.Sum64()
}
