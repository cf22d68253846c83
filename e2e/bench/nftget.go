package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// elementGetter looks single elements of an nftables set up by key
// (NFT_MSG_GETSETELEM with a key, as `nft get element` does): one netlink
// round trip whatever the set's size, where listing a set reads all of it.
// At 100,000 Services reading doorman's endpoint map whole after every
// commit took longer than the changes being timed and took a core from the
// system under test.
type elementGetter struct {
	conn   *netlink.Conn
	family uint8 // unix.NFPROTO_*
	table  string
}

func newElementGetter(ns netns.NsHandle, family uint8, table string) (*elementGetter, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &elementGetter{conn: conn, family: family, table: table}, nil
}

func (g *elementGetter) close() { _ = g.conn.Close() }

// get returns the data of set's element with key (nil for a verdict
// map's element), and false when the set holds no such element.
func (g *elementGetter) get(set string, key []byte) ([]byte, bool, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, g.table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
		list.Nested(unix.NFTA_LIST_ELEM, func(elem *netlink.AttributeEncoder) error {
			elem.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
				k.Bytes(unix.NFTA_DATA_VALUE, key)
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return nil, false, err
	}
	msgs, err := g.conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request, // the element, or an error: no separate ACK
		},
		Data: append([]byte{g.family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get element of %s %s: %w", g.table, set, err)
	}
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM) || len(m.Data) < 4 {
			continue
		}
		data, err := elementData(m.Data[4:])
		return data, err == nil, err
	}
	return nil, false, nil
}

// elementData finds the first element's data (a map's value; nil for a
// verdict) in a NFT_MSG_NEWSETELEM message's attributes.
func elementData(b []byte) ([]byte, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var data []byte
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() && data == nil {
				list.Nested(func(elem *netlink.AttributeDecoder) error {
					for elem.Next() {
						if elem.Type() != unix.NFTA_SET_ELEM_DATA {
							continue
						}
						elem.Nested(func(d *netlink.AttributeDecoder) error {
							for d.Next() {
								if d.Type() == unix.NFTA_DATA_VALUE {
									data = d.Bytes()
								}
							}
							return nil
						})
					}
					return nil
				})
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	return data, nil
}

// Keys in the layout both doorman's and kube-proxy's nftables maps use:
// each field of a concatenation padded to 4 bytes.

// servicePortKey is "address . l4proto . port" (the dispatch maps' key).
func servicePortKey(addr netip.Addr, proto byte, port uint16) []byte {
	b := addr.AsSlice()
	b = append(b, proto, 0, 0, 0)
	return append(b, byte(port>>8), byte(port), 0, 0)
}

// endpointSlotKey is doorman's service-endpoints key: the Service port
// and the endpoint's index, as numgen leaves it in a register.
func endpointSlotKey(addr netip.Addr, proto byte, port uint16, index int) []byte {
	return binary.NativeEndian.AppendUint32(servicePortKey(addr, proto, port), uint32(index))
}
