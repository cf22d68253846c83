package drift

import (
	"encoding/binary"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
)

// nfgenmsgLen is the size of struct nfgenmsg, the header of every nftables
// message: family, version, resource id.
const nfgenmsgLen = 4

// tableAttr is the attribute type of the table name in every nftables
// object message (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
// NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, ...).
const tableAttr = 1

// commitEnd is a commit as its closing NFT_MSG_NEWGEN tells it.
type commitEnd struct {
	agent.Commit
	// touched: one of the commit's messages named the watched table.
	touched bool
}

// decoder groups the event messages of one commit, which the kernel sends in
// order and closes with NFT_MSG_NEWGEN, and remembers whether any of them
// touched the watched table.
type decoder struct {
	family  uint8 // unix.NFPROTO_INET
	table   string
	touched bool
}

func newDecoder(table string) *decoder {
	return &decoder{family: unix.NFPROTO_INET, table: table}
}

// message takes one event message. At the end of every commit it returns
// the commit and true.
func (d *decoder) message(m netlink.Message) (commitEnd, bool, error) {
	if m.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return commitEnd{}, false, nil
	}
	if len(m.Data) < nfgenmsgLen {
		return commitEnd{}, false, fmt.Errorf("nftables event type %d: %d bytes, shorter than its header", m.Header.Type&0xff, len(m.Data))
	}
	switch m.Header.Type & 0xff {
	case unix.NFT_MSG_NEWGEN:
		gen, err := genID(m)
		if err != nil {
			d.touched = false
			return commitEnd{}, false, err
		}
		touched := d.touched
		d.touched = false
		return commitEnd{Commit: agent.Commit{Gen: gen, PortID: m.Header.PID}, touched: touched}, true, nil
	default:
		if d.touched || m.Data[0] != d.family {
			return commitEnd{}, false, nil
		}
		name, err := tableName(m.Data[nfgenmsgLen:])
		if err != nil {
			return commitEnd{}, false, fmt.Errorf("nftables event type %d: %w", m.Header.Type&0xff, err)
		}
		d.touched = name == d.table
		return commitEnd{}, false, nil
	}
}

// reset forgets a commit whose messages were partly lost.
func (d *decoder) reset() { d.touched = false }

func tableName(attrs []byte) (string, error) {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return "", err
	}
	for ad.Next() {
		if ad.Type() == tableAttr {
			return ad.String(), ad.Err()
		}
	}
	return "", ad.Err()
}

// genID reads NFTA_GEN_ID from a NEWGEN message.
func genID(m netlink.Message) (uint32, error) {
	if len(m.Data) < nfgenmsgLen {
		return 0, fmt.Errorf("generation message: %d bytes", len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[nfgenmsgLen:])
	if err != nil {
		return 0, fmt.Errorf("generation message: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			id := ad.Uint32()
			return id, ad.Err()
		}
	}
	if err := ad.Err(); err != nil {
		return 0, fmt.Errorf("generation message: %w", err)
	}
	return 0, fmt.Errorf("generation message without an id")
}
