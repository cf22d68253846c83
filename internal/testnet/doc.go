// Package testnet builds throw-away network topologies for kernel tests:
// named network namespaces, veth pairs between them, addresses, routes,
// forwarding, and small TCP/UDP echo servers and clients that run inside a
// namespace.
//
// Every object is created under a name unique to the test (a prefix plus
// random hex) and removed by t.Cleanup, so tests may run in parallel and
// never touch the root namespace. Helpers call t.Skip when the test does not
// run as root.
//
// A typical topology:
//
//	client := testnet.NewNS(t, "client")
//	node := testnet.NewNS(t, "node")
//	server := testnet.NewNS(t, "server")
//	testnet.Link(t, client, []string{"10.0.1.2/24"}, node, []string{"10.0.1.1/24"})
//	testnet.Link(t, node, []string{"10.0.2.1/24"}, server, []string{"10.0.2.2/24"})
//	node.EnableForwarding(t)
//	client.AddRoute(t, "default", "10.0.1.1")
//	server.AddRoute(t, "default", "10.0.2.1")
//	server.TCPEcho(t, "server", "10.0.2.2:8080")
//	got, err := client.DialTCP("10.0.2.2:8080", time.Second)
//	// got == "server 10.0.1.2:<port>"
//
// The echo servers answer each TCP connection or UDP datagram with one line,
// "<name> <client-ip:port>\n", so a test learns which server answered and
// which source address that server saw (DNAT and masquerade are visible).
//
// testnet is test support: it may import netlink, netns and testing, and
// nothing of doorman's own packages.
package testnet
