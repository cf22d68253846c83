package conntrack

import (
	"net/netip"
	"sort"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Target selects UDP conntrack entries to delete.
//
//   - Frontend address and Port set, Endpoint set: entries whose original
//     destination is Frontend:Port and whose reply comes from Endpoint,
//     address and port (a ClusterIP, externalIP or LoadBalancer IP lost
//     that endpoint, or the endpoint's target port changed).
//   - NodePort set, Endpoint set: entries to that NodePort answered by
//     Endpoint.
//   - Endpoint unset: every entry toward the frontend (it had no endpoint
//     and now has one: what conntrack remembers of the reject path must
//     go).
type Target struct {
	Frontend netip.Addr // unset for a NodePort target
	Port     uint16     // the Service port, or the NodePort
	NodePort bool
	IPv6     bool           // the family of the entries
	Endpoint netip.AddrPort // unset: any
}

// Plan returns the UDP conntrack entries the changes make stale, in a
// stable order, each once. Entries it cannot read are skipped: the
// dataplane has already rejected them.
func Plan(changes []dataplane.Change) []Target {
	seen := map[Target]bool{}
	var out []Target
	add := func(t Target) {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, c := range changes {
		old, new := udpPort(c.Old), udpPort(c.New)
		if old == nil {
			// A new UDP Service may reuse a frontend whose traffic was
			// refused or went elsewhere.
			if new != nil {
				gained(nil, new, add)
			}
			continue
		}
		removed := removedEndpoints(old, new)
		oldFronts := append(internalFrontends(old), externalFrontends(old)...)
		for _, ep := range removed {
			for _, f := range oldFronts {
				f.Endpoint = ep
				add(f)
			}
		}
		if new != nil {
			gained(old, new, add)
		}
	}
	sort.Slice(out, func(i, j int) bool { return less(out[i], out[j]) })
	return out
}

func less(a, b Target) bool {
	if a.NodePort != b.NodePort {
		return !a.NodePort
	}
	if a.IPv6 != b.IPv6 {
		return !a.IPv6
	}
	if c := a.Frontend.Compare(b.Frontend); c != 0 {
		return c < 0
	}
	if a.Port != b.Port {
		return a.Port < b.Port
	}
	return a.Endpoint.Compare(b.Endpoint) < 0
}

func udpPort(e *doormanv1.Entry) *doormanv1.ServicePort {
	sp := e.GetServicePort()
	if sp == nil || sp.GetProtocol() != doormanv1.Protocol_PROTOCOL_UDP {
		return nil
	}
	return sp
}

// gained adds every entry toward the frontends of new that had no endpoint
// in old (nil: did not exist) and have one now. The ClusterIP uses
// "endpoints"; external frontends the cluster-wide set.
func gained(old, new *doormanv1.ServicePort, add func(Target)) {
	if len(old.GetEndpoints()) == 0 && len(new.GetEndpoints()) > 0 {
		for _, f := range internalFrontends(new) {
			add(f)
		}
	}
	if len(clusterSet(old)) == 0 && len(clusterSet(new)) > 0 {
		for _, f := range externalFrontends(new) {
			add(f)
		}
	}
}

// clusterSet is the cluster-wide endpoint set external frontends use.
func clusterSet(sp *doormanv1.ServicePort) []*doormanv1.Endpoint {
	if sp.GetInternalPolicyLocal() {
		return sp.GetClusterEndpoints()
	}
	return sp.GetEndpoints()
}

// internalFrontends is the ClusterIP with its port.
func internalFrontends(sp *doormanv1.ServicePort) []Target {
	return addrFrontends(sp, []string{sp.GetClusterIp()})
}

// externalFrontends lists externalIPs and LoadBalancer IPs with the
// Service port, and the NodePort.
func externalFrontends(sp *doormanv1.ServicePort) []Target {
	out := addrFrontends(sp, append(append([]string(nil), sp.GetExternalIps()...), sp.GetLoadBalancerIps()...))
	if np := sp.GetNodePort(); np != 0 && np <= 65535 {
		out = append(out, Target{Port: uint16(np), NodePort: true, IPv6: sp.GetFamily() == doormanv1.IPFamily_IP_FAMILY_IPV6})
	}
	return out
}

func addrFrontends(sp *doormanv1.ServicePort, addrs []string) []Target {
	var out []Target
	v6 := sp.GetFamily() == doormanv1.IPFamily_IP_FAMILY_IPV6
	port := uint16(sp.GetPort())
	for _, s := range addrs {
		if a, err := netip.ParseAddr(s); err == nil && port != 0 {
			out = append(out, Target{Frontend: a.Unmap(), Port: port, IPv6: v6})
		}
	}
	return out
}

// removedEndpoints lists the endpoints (address and port) old had in any
// of its sets (endpoints, cluster-wide, local) that new lacks altogether.
// A changed target port counts: replies from the old port are stale too.
func removedEndpoints(old, new *doormanv1.ServicePort) []netip.AddrPort {
	keep := map[netip.AddrPort]bool{}
	for _, ep := range allEndpoints(new) {
		if a, ok := endpointAddrPort(ep); ok {
			keep[a] = true
		}
	}
	var out []netip.AddrPort
	for _, ep := range allEndpoints(old) {
		a, ok := endpointAddrPort(ep)
		if !ok || keep[a] {
			continue
		}
		keep[a] = true // once
		out = append(out, a)
	}
	return out
}

// endpointAddrPort reads an endpoint's address (unmapped) and port.
func endpointAddrPort(ep *doormanv1.Endpoint) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(ep.GetIp())
	if err != nil || ep.GetPort() == 0 || ep.GetPort() > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(ep.GetPort())), true
}

func allEndpoints(sp *doormanv1.ServicePort) []*doormanv1.Endpoint {
	out := append([]*doormanv1.Endpoint(nil), sp.GetEndpoints()...)
	out = append(out, sp.GetClusterEndpoints()...)
	return append(out, sp.GetLocalEndpoints()...)
}
