package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"syscall"
	"time"
)

// SCTP without SCTP sockets: this machine's kernel has none, but
// nftables, conntrack and NAT handle SCTP packets all the same. A raw IP
// socket of protocol 132 sends an SCTP INIT chunk and another receives
// what arrives in a namespace, which is enough to see where a Service
// sends an association's first packet.

const ipProtoSCTP = 132

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SendSCTPInit sends one SCTP INIT chunk from the named network namespace
// (a Pod's, a node's, the external client's) to dst, from srcPort, with
// tag as its initiate tag: NAT may change the ports, never the tag.
func SendSCTPInit(netnsName string, dst netip.AddrPort, srcPort uint16, tag uint32) error {
	if !dst.Addr().Is4() {
		return fmt.Errorf("SCTP INIT to %s: IPv4 only", dst)
	}
	pkt := make([]byte, 12+20)
	binary.BigEndian.PutUint16(pkt[0:], srcPort)
	binary.BigEndian.PutUint16(pkt[2:], dst.Port())
	// Verification tag 0, as an INIT must carry. The chunk: type 1, length
	// 20, initiate tag, a_rwnd, outbound and inbound streams, initial TSN.
	c := pkt[12:]
	c[0] = 1
	binary.BigEndian.PutUint16(c[2:], 20)
	binary.BigEndian.PutUint32(c[4:], tag)
	binary.BigEndian.PutUint32(c[8:], 65535)
	binary.BigEndian.PutUint16(c[12:], 1)
	binary.BigEndian.PutUint16(c[14:], 1)
	binary.BigEndian.PutUint32(c[16:], 1)
	binary.LittleEndian.PutUint32(pkt[8:], crc32.Checksum(pkt, castagnoli))
	return inNetNS(netnsName, func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, ipProtoSCTP)
		if err != nil {
			return fmt.Errorf("raw SCTP socket: %w", err)
		}
		defer func() { _ = syscall.Close(fd) }()
		if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("send SCTP INIT to %s: %w", dst, err)
		}
		return nil
	})
}

// SCTPPacket is an SCTP packet as it arrived: its source and destination
// after any NAT on the way, and the initiate tag of its INIT chunk (0 when
// it does not start with one).
type SCTPPacket struct {
	From, To netip.AddrPort
	InitTag  uint32
}

// SCTPListener receives every SCTP packet that reaches a network
// namespace's IPv4 stack.
type SCTPListener struct{ fd int }

// ListenSCTP opens a raw SCTP socket in the named network namespace.
func ListenSCTP(netnsName string) (*SCTPListener, error) {
	var fd int
	err := inNetNS(netnsName, func() error {
		var err error
		fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, ipProtoSCTP)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raw SCTP socket in %s: %w", netnsName, err)
	}
	tv := syscall.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	return &SCTPListener{fd: fd}, nil
}

// Receive returns the next packet that arrives within timeout; false when
// none does.
func (l *SCTPListener) Receive(timeout time.Duration) (SCTPPacket, bool, error) {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(l.fd, buf, 0)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return SCTPPacket{}, false, err
		}
		if n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n < ihl+4 {
			continue
		}
		src, _ := netip.AddrFromSlice(buf[12:16])
		dst, _ := netip.AddrFromSlice(buf[16:20])
		pkt := SCTPPacket{
			From: netip.AddrPortFrom(src, binary.BigEndian.Uint16(buf[ihl:])),
			To:   netip.AddrPortFrom(dst, binary.BigEndian.Uint16(buf[ihl+2:])),
		}
		if chunk := buf[ihl+12 : n]; len(chunk) >= 8 && chunk[0] == 1 {
			pkt.InitTag = binary.BigEndian.Uint32(chunk[4:])
		}
		return pkt, true, nil
	}
	return SCTPPacket{}, false, nil
}

// Close closes the socket.
func (l *SCTPListener) Close() error { return syscall.Close(l.fd) }
