//go:build e2e

package suite

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Reaching a Service": NodePort on 127.0.0.1 from the node
// itself (--localhost-nodeports, off by default). Without the flag the
// node's own 127.0.0.1:<nodePort> reaches nothing; with it, TCP and UDP
// reach the Service's Pod on another node, which sees the node's address
// (masqueraded: 127.0.0.1 cannot leave the node).
func TestSemantics_LocalhostNodePorts(t *testing.T) {
	track(t)
	doormanOnly(t)
	nn := netnsCluster(t, "restarts a node agent with --localhost-nodeports as a process; on kind the agents are the DaemonSet deploy/ installed")
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	backend := echoPod(t, ns, "backend", nodes[1], map[string]string{"app": "backend"}, 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort,
		tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	want := set(backend.Name)
	node := nodeOf(t, nodes[0])
	from := fromNode(t, nodes[0])
	ports := map[string]int32{"tcp": svc.Spec.Ports[0].NodePort, "udp": svc.Spec.Ports[1].NodePort}
	for proto, np := range ports {
		// Programmed on the node: its own address answers.
		waitAnswers(t, from, proto, addr(node.IP, np), want)
	}

	t.Run("off by default", func(t *testing.T) {
		for proto, np := range ports {
			for range 3 {
				if got, err := from.ask(proto, addr("127.0.0.1", np), "hostname"); err == nil {
					t.Errorf("%s 127.0.0.1:%d from %s answered by %q without --localhost-nodeports", proto, np, nodes[0], got)
				}
			}
		}
	})

	restartAgentWith(t, nn, nodes[0], "--localhost-nodeports")
	for proto, np := range ports {
		t.Run(proto+" on 127.0.0.1 with --localhost-nodeports", func(t *testing.T) {
			target := addr("127.0.0.1", np)
			waitAnswers(t, from, proto, target, want)
			got, err := from.ask(proto, target, "clientip")
			if err != nil {
				t.Fatal(err)
			}
			if host := clientHost(t, got); host != node.IP {
				t.Errorf("%s %s: the Pod saw client %s, want the node's address %s (masqueraded)", proto, target, host, node.IP)
			}
		})
	}
}

// SEMANTICS.md, "Reaching a Service": localhost NodePorts without
// CVE-2020-8558. With --localhost-nodeports (route_localnet=1), a
// neighbour on the node network sends UDP datagrams to 127.0.0.1 in
// frames addressed to the node's MAC: a listener bound to 127.0.0.1 in
// the node's namespace must not receive them, while the same frames
// addressed to the node's own IP reach a listener there (the probe
// works).
func TestSemantics_LocalhostNodePorts_NeighbourCannotReachLoopback(t *testing.T) {
	track(t)
	doormanOnly(t)
	nn := netnsCluster(t, "sends raw frames from the external client's namespace to a node's MAC and listens inside the node's namespace")
	nodes := nodeNames(t, 1)
	node := nodeOf(t, nodes[0])
	nodeNS := clusterNode(t, nn, nodes[0]).NetNS

	restartAgentWith(t, nn, nodes[0], "--localhost-nodeports")
	retry.Eventually(t, time.Minute, "route_localnet=1 in "+nodeNS, func() error {
		v, err := readSysctlIn(nodeNS, "/proc/sys/net/ipv4/conf/all/route_localnet")
		if err != nil || v != "1" {
			return fmt.Errorf("route_localnet %q: %w", v, err)
		}
		return nil
	})

	const port = 39458
	loopback := listenUDPIn(t, nodeNS, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	own := listenUDPIn(t, nodeNS, netip.AddrPortFrom(netip.MustParseAddr(node.IP), port))
	nodeMAC := macIn(t, nodeNS, "eth0")
	send := rawSenderIn(t, nn.ExternalNetNS(), "eth0", nodeMAC)
	src := netip.MustParseAddr(cluster.ExternalIP)

	t.Run("the probe reaches the node's own address", func(t *testing.T) {
		retry.Eventually(t, 30*time.Second, "a datagram to "+node.IP+" in a frame to "+nodeMAC.String(), func() error {
			send(t, src, netip.MustParseAddr(node.IP), port, "own")
			return receivedWithin(own, "own", time.Second)
		})
	})
	t.Run("the probe does not reach 127.0.0.1", func(t *testing.T) {
		for i := range 3 {
			send(t, src, netip.MustParseAddr("127.0.0.1"), port, fmt.Sprintf("loopback-%d", i))
		}
		if err := receivedWithin(loopback, "loopback-", 2*time.Second); err == nil {
			t.Errorf("a neighbour reached a listener on 127.0.0.1:%d of %s (CVE-2020-8558)", port, nodes[0])
		}
	})
}

// restartAgentWith restarts a node's agent with extra flags until the test
// ends, then with the cluster's own.
func restartAgentWith(t *testing.T, nn *provider.NetNS, node string, flags ...string) {
	t.Helper()
	restart := func(flags ...string) error {
		nn.StopAgent(node)
		if err := nn.StartAgentWith(node, flags...); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := nn.WaitAgentHealthy(ctx, node)
		return err
	}
	t.Cleanup(func() {
		if err := restart(); err != nil {
			t.Errorf("restart the agent of %s without %v: %v", node, flags, err)
		}
	})
	if err := restart(flags...); err != nil {
		t.Fatalf("restart the agent of %s with %v: %v", node, flags, err)
	}
}

func clusterNode(t *testing.T, nn *provider.NetNS, name string) cluster.Node {
	t.Helper()
	for _, n := range nn.Cluster.Nodes() {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %q", name)
	return cluster.Node{}
}

func readSysctlIn(ns, path string) (string, error) {
	var v string
	err := cluster.InNetNS(ns, func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

func listenUDPIn(t *testing.T, ns string, at netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := cluster.InNetNS(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", at, ns, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func macIn(t *testing.T, ns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := cluster.InNetNS(ns, func() error {
		i, err := net.InterfaceByName(dev)
		if err == nil {
			mac = i.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatalf("%s in %s: %v", dev, ns, err)
	}
	return mac
}

// receivedWithin waits up to d for a datagram whose payload starts with
// prefix.
func receivedWithin(c *net.UDPConn, prefix string, d time.Duration) error {
	buf := make([]byte, 512)
	deadline := time.Now().Add(d)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return fmt.Errorf("nothing received: %w", err)
		}
		if strings.HasPrefix(string(buf[:n]), prefix) {
			return nil
		}
	}
}

// rawSenderIn opens an AF_PACKET socket on dev in the named namespace and
// returns a function that sends one UDP datagram in an Ethernet frame
// addressed to dst MAC, whatever the IP addresses: the sender's routing
// never sees it.
func rawSenderIn(t *testing.T, ns, dev string, dstMAC net.HardwareAddr) func(*testing.T, netip.Addr, netip.Addr, uint16, string) {
	t.Helper()
	var fd, ifindex int
	var srcMAC net.HardwareAddr
	if err := cluster.InNetNS(ns, func() error {
		i, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		ifindex, srcMAC = i.Index, i.HardwareAddr
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket on %s in %s: %v", dev, ns, err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	to := &unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], dstMAC)
	return func(t *testing.T, src, dst netip.Addr, port uint16, payload string) {
		t.Helper()
		if err := unix.Sendto(fd, udpFrame(dstMAC, srcMAC, src, dst, port, []byte(payload)), 0, to); err != nil {
			t.Fatalf("send a frame from %s: %v", ns, err)
		}
	}
}

// udpFrame is an Ethernet frame holding an IPv4 UDP datagram (UDP
// checksum 0: none, allowed over IPv4).
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, port uint16, payload []byte) []byte {
	f := append(append([]byte{}, dstMAC...), srcMAC...)
	f = binary.BigEndian.AppendUint16(f, unix.ETH_P_IP)
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_UDP
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(f, ip...), udp...), payload...)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
