package drift

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
)

func objectMsg(t *testing.T, msgType uint16, family uint8, table string) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(tableAttr, table)
	ae.String(2, "services") // a chain or set name, ignored
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType), PID: 77},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, b...),
	}
}

func genMsg(t *testing.T, gen, port uint32) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_GEN_ID, gen)
	ae.Uint32(unix.NFTA_GEN_PROC_PID, 4242)
	ae.String(unix.NFTA_GEN_PROC_NAME, "nft")
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN), PID: port},
		Data:   append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, b...),
	}
}

func TestDecoder(t *testing.T) {
	inet := uint8(unix.NFPROTO_INET)
	for _, tc := range []struct {
		name string
		msgs []netlink.Message
		want []agent.Commit // the commits that touched the table
	}{
		{"element deleted from doorman's table", []netlink.Message{
			objectMsg(t, unix.NFT_MSG_DELSETELEM, inet, "doorman"), genMsg(t, 12, 900),
		}, []agent.Commit{{Gen: 12, PortID: 900}}},
		{"table deleted, with everything in it", []netlink.Message{
			objectMsg(t, unix.NFT_MSG_DELRULE, inet, "doorman"), objectMsg(t, unix.NFT_MSG_DELCHAIN, inet, "doorman"),
			objectMsg(t, unix.NFT_MSG_DELTABLE, inet, "doorman"), genMsg(t, 13, 901),
		}, []agent.Commit{{Gen: 13, PortID: 901}}},
		{"another table: no commit", []netlink.Message{
			objectMsg(t, unix.NFT_MSG_NEWRULE, inet, "filter"), genMsg(t, 14, 902),
		}, nil},
		{"same name, another family: no commit", []netlink.Message{
			objectMsg(t, unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_IPV4, "doorman"), genMsg(t, 15, 903),
		}, nil},
		{"one commit of two touches the table", []netlink.Message{
			objectMsg(t, unix.NFT_MSG_NEWRULE, inet, "filter"), genMsg(t, 16, 904),
			objectMsg(t, unix.NFT_MSG_NEWRULE, inet, "filter"), objectMsg(t, unix.NFT_MSG_NEWCHAIN, inet, "doorman"), genMsg(t, 17, 905),
			genMsg(t, 18, 906),
		}, []agent.Commit{{Gen: 17, PortID: 905}}},
		{"other netlink subsystems are ignored", []netlink.Message{
			{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK << 8)}, Data: []byte{1}},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder("doorman")
			var got []agent.Commit
			var ends []uint32
			for _, m := range tc.msgs {
				c, end, err := d.message(m)
				if err != nil {
					t.Fatal(err)
				}
				if end {
					ends = append(ends, c.Gen)
				}
				if end && c.touched {
					got = append(got, c.Commit)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("commits that touched the table (-want +got):\n%s", diff)
			}
			var wantEnds []uint32
			for _, m := range tc.msgs {
				if m.Header.Type == netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) {
					gen, err := genID(m)
					if err != nil {
						t.Fatal(err)
					}
					wantEnds = append(wantEnds, gen)
				}
			}
			if diff := cmp.Diff(wantEnds, ends); diff != "" {
				t.Errorf("ends of commits, touching the table or not (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecoderRejectsShortMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  netlink.Message
	}{
		{"object without its header", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE)}, Data: []byte{1}}},
		{"generation without an id", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)}, Data: []byte{0, 0, 0, 0}}},
		{"truncated attribute", netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)}, Data: []byte{1, 0, 0, 0, 200, 0, 1, 0, 'x'}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := newDecoder("doorman").message(tc.msg); err == nil {
				t.Error("no error")
			}
		})
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add(uint16(unix.NFT_MSG_NEWSETELEM), []byte{1, 0, 0, 0, 12, 0, 1, 0, 'd', 'o', 'o', 'r', 'm', 'a', 'n', 0})
	f.Add(uint16(unix.NFT_MSG_NEWGEN), []byte{0, 0, 0, 0, 8, 0, 1, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		d := newDecoder("doorman")
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ&0xff), PID: 7}, Data: data}
		c, end, err := d.message(m)
		switch {
		case err != nil && end:
			t.Fatalf("type %d: an error and the end of a commit", typ&0xff)
		case typ&0xff != unix.NFT_MSG_NEWGEN && end:
			t.Fatalf("type %d ended a commit; only NEWGEN does", typ&0xff)
		case typ&0xff == unix.NFT_MSG_NEWGEN && err == nil && !end:
			t.Fatal("a NEWGEN that decodes did not end the commit")
		case end && (c.touched || c.PortID != 7):
			t.Fatalf("a lone NEWGEN: touched %v, port %d; want untouched, port 7", c.touched, c.PortID)
		}
		if end {
			if gen, err := genID(m); err != nil || gen != c.Gen {
				t.Fatalf("commit generation %d; genID says %d, %v", c.Gen, gen, err)
			}
		}
	})
}
