package doormanv1

import (
	"errors"
	"fmt"
	"net/netip"
)

// The one definition of a valid entry, shared by both sides: the control
// plane checks every value it produces with it (and leaves out, naming the
// Service, one that fails), the agent checks every entry it receives with
// it (and refuses one that fails alone), and the agent's renderer parses
// addresses with ParseAddr and ParsePrefix. So what the control plane sends
// is by construction what an agent accepts and can render.

// AffinityTimeoutMax bounds sessionAffinity timeouts, in seconds
// (Kubernetes allows at most a day).
const AffinityTimeoutMax = 86400

// ValidateEntry checks one entry on its own: its key matches its value, its
// digest is the digest of its value, and every field of the value is well
// formed (see ValidateNode and ValidateServicePort). The error names the
// key, and the field and value at fault.
func ValidateEntry(e *Entry) error { return validateEntry(e, nil) }

// ValidateEncodedEntry is ValidateEntry for an entry unmarshalled from
// raw, as a cache reads it back: when raw holds the value in one field
// whose bytes hash to the entry's digest (as every Entry this package's
// encoding wrote does), the digest is checked on those bytes instead of
// on the value encoded again, which at 100,000 entries is a good part of
// an agent's start-up. Bytes that hash to the digest decode to exactly
// one value, so the digest still names the value; bytes that encode it
// otherwise than its canonical encoding (fields reordered by some other
// writer) give a digest that differs from the control plane's, which
// costs a resend of that entry on resume, never a wrong value kept.
func ValidateEncodedEntry(e *Entry, raw []byte) error { return validateEntry(e, raw) }

// validateEntry is ValidateEntry, taking the digest on raw's bytes of the
// value where it can (see ValidateEncodedEntry; raw nil: it cannot).
func validateEntry(e *Entry, raw []byte) error {
	if e == nil {
		return errors.New("nil entry")
	}
	key := e.GetKey()
	if key == "" {
		return errors.New("entry with an empty key")
	}
	var (
		digest uint64
		err    error
	)
	switch v := e.GetValue().(type) {
	case *Entry_Node:
		if key != NodeKey {
			return fmt.Errorf("entry %q: a node value is only allowed under the key %q", key, NodeKey)
		}
		if v.Node == nil {
			return fmt.Errorf("entry %q: empty node value", key)
		}
		if err := ValidateNode(v.Node); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
		digest, err = encodedDigest(v.Node, raw, entryNodeField, e.GetDigest())
	case *Entry_ServicePort:
		if key == NodeKey {
			return fmt.Errorf("entry %q: the key is reserved for the node value", key)
		}
		if v.ServicePort == nil {
			return fmt.Errorf("entry %q: empty service port value", key)
		}
		if err := ValidateServicePort(v.ServicePort); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
		if want := ServicePortKey(v.ServicePort); key != want {
			return fmt.Errorf("entry %q: key does not match its value, which belongs under %q", key, want)
		}
		digest, err = encodedDigest(v.ServicePort, raw, entryServicePortField, e.GetDigest())
	default:
		return fmt.Errorf("entry %q: no value", key)
	}
	if err != nil {
		return fmt.Errorf("entry %q: digest: %w", key, err)
	}
	if digest != e.GetDigest() {
		return fmt.Errorf("entry %q: digest %016x does not match its value (%016x)", key, e.GetDigest(), digest)
	}
	return nil
}

// ValidateNode checks a Node value: a name, NodePort addresses and Pod and
// Service CIDRs that parse (ParseAddr, ParsePrefix).
func ValidateNode(n *Node) error {
	if n.GetName() == "" {
		return errors.New("node without a name")
	}
	for _, a := range n.GetNodeportAddresses() {
		if _, err := ParseAddr(a); err != nil {
			return fmt.Errorf("nodeport address: %w", err)
		}
	}
	for _, c := range n.GetPodCidrs() {
		if _, err := ParsePrefix(c); err != nil {
			return fmt.Errorf("pod CIDR: %w", err)
		}
	}
	for _, c := range n.GetServiceCidrs() {
		if _, err := ParsePrefix(c); err != nil {
			return fmt.Errorf("service CIDR: %w", err)
		}
	}
	return nil
}

// ValidateServicePort checks a ServicePort value: namespace and name,
// protocol and family known, ports in range, every address and source
// range of the value's family (ParseAddr, ParsePrefix), the affinity
// timeout at most AffinityTimeoutMax, and the fields of endpoints sent by
// node as assemble.go says.
func ValidateServicePort(sp *ServicePort) error {
	if sp.GetNamespace() == "" || sp.GetName() == "" {
		return errors.New("service port without a namespace or name")
	}
	switch sp.GetProtocol() {
	case Protocol_PROTOCOL_TCP, Protocol_PROTOCOL_UDP, Protocol_PROTOCOL_SCTP:
	default:
		return fmt.Errorf("protocol %d not supported", sp.GetProtocol())
	}
	family := sp.GetFamily()
	switch family {
	case IPFamily_IP_FAMILY_IPV4, IPFamily_IP_FAMILY_IPV6:
	default:
		return fmt.Errorf("IP family %d not supported", family)
	}
	if err := checkPort("port", sp.GetPort(), false); err != nil {
		return err
	}
	if err := checkPort("node port", sp.GetNodePort(), true); err != nil {
		return err
	}
	if err := checkPort("health check node port", sp.GetHealthCheckNodePort(), true); err != nil {
		return err
	}
	if t := sp.GetAffinityTimeoutSeconds(); t > AffinityTimeoutMax {
		return fmt.Errorf("affinity timeout %ds above %ds", t, AffinityTimeoutMax)
	}
	if ip := sp.GetClusterIp(); ip != "" {
		if err := checkAddr("cluster IP", ip, family); err != nil {
			return err
		}
	}
	for _, ip := range sp.GetExternalIps() {
		if err := checkAddr("external IP", ip, family); err != nil {
			return err
		}
	}
	for _, ip := range sp.GetLoadBalancerIps() {
		if err := checkAddr("load balancer IP", ip, family); err != nil {
			return err
		}
	}
	for _, r := range sp.GetLoadBalancerSourceRanges() {
		p, err := ParsePrefix(r)
		if err != nil {
			return fmt.Errorf("load balancer source range: %w", err)
		}
		if FamilyOf(p.Addr()) != family {
			return fmt.Errorf("load balancer source range %q is not %s", r, FamilyName(family))
		}
	}
	if err := validateByNode(sp); err != nil {
		return err
	}
	if err := checkEndpoints("endpoint", sp.GetEndpoints(), family); err != nil {
		return err
	}
	if err := checkEndpoints("cluster endpoint", sp.GetClusterEndpoints(), family); err != nil {
		return err
	}
	return checkEndpoints("local endpoint", sp.GetLocalEndpoints(), family)
}

// ParseAddr reads an address as both sides accept it: plain IPv4 or IPv6
// text, no zone, and no IPv4-mapped IPv6 form (::ffff:10.0.0.1), whose
// family would be ambiguous: an agent would either program it as IPv6,
// where no packet carries it, or unmap it into an address that was not
// sent.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("IP address %q: zones and IPv4-mapped IPv6 addresses are not allowed", s)
	}
	return a, nil
}

// ParsePrefix reads a CIDR as both sides accept it: no IPv4-mapped IPv6
// prefix (::ffff:10.0.0.0/104), for the reason ParseAddr gives. Host bits
// may be set; callers mask.
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: IPv4-mapped IPv6 prefixes are not allowed", s)
	}
	return p, nil
}

// FamilyOf is the family of an address ParseAddr accepted.
func FamilyOf(a netip.Addr) IPFamily {
	if a.Is4() {
		return IPFamily_IP_FAMILY_IPV4
	}
	return IPFamily_IP_FAMILY_IPV6
}

func checkEndpoints(what string, eps []*Endpoint, family IPFamily) error {
	for i, ep := range eps {
		if ep == nil {
			return fmt.Errorf("%s %d: empty", what, i)
		}
		if err := checkAddr(what, ep.GetIp(), family); err != nil {
			return err
		}
		if port := ep.GetPort(); port < 1 || port > 65535 {
			// checkPort's error, its context built only when needed.
			return checkPort(what+" "+ep.GetIp()+" port", port, false)
		}
	}
	return nil
}

func checkPort(what string, port uint32, zeroOK bool) error {
	if port == 0 && zeroOK {
		return nil
	}
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s %d out of range 1-65535", what, port)
	}
	return nil
}

func checkAddr(what, s string, family IPFamily) error {
	a, err := ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if FamilyOf(a) != family {
		return fmt.Errorf("%s %q is not %s", what, s, FamilyName(family))
	}
	return nil
}
