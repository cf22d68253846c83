package state

import (
	"errors"
	"fmt"
	"net/netip"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// ValidateEntry checks one entry on its own: its key matches its value, its
// digest is the digest of its value, and every field of the value is well
// formed. The error names the key.
func ValidateEntry(e *doormanv1.Entry) error {
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
	case *doormanv1.Entry_Node:
		if key != doormanv1.NodeKey {
			return fmt.Errorf("entry %q: a node value is only allowed under the key %q", key, doormanv1.NodeKey)
		}
		if v.Node == nil {
			return fmt.Errorf("entry %q: empty node value", key)
		}
		if err := validateNode(v.Node); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
		digest, err = doormanv1.ValueDigest(v.Node)
	case *doormanv1.Entry_ServicePort:
		if key == doormanv1.NodeKey {
			return fmt.Errorf("entry %q: the key is reserved for the node value", key)
		}
		if v.ServicePort == nil {
			return fmt.Errorf("entry %q: empty service port value", key)
		}
		if err := validateServicePort(v.ServicePort); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
		if want := doormanv1.ServicePortKey(v.ServicePort); key != want {
			return fmt.Errorf("entry %q: key does not match its value, which belongs under %q", key, want)
		}
		digest, err = doormanv1.ValueDigest(v.ServicePort)
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

func validateNode(n *doormanv1.Node) error {
	if n.GetName() == "" {
		return errors.New("node without a name")
	}
	for _, a := range n.GetNodeportAddresses() {
		if _, err := parseAddr(a); err != nil {
			return fmt.Errorf("nodeport address: %w", err)
		}
	}
	for _, c := range n.GetPodCidrs() {
		if _, err := parsePrefix(c); err != nil {
			return fmt.Errorf("pod CIDR: %w", err)
		}
	}
	for _, c := range n.GetServiceCidrs() {
		if _, err := parsePrefix(c); err != nil {
			return fmt.Errorf("service CIDR: %w", err)
		}
	}
	return nil
}

func validateServicePort(sp *doormanv1.ServicePort) error {
	if sp.GetNamespace() == "" || sp.GetName() == "" {
		return errors.New("service port without a namespace or name")
	}
	switch sp.GetProtocol() {
	case doormanv1.Protocol_PROTOCOL_TCP, doormanv1.Protocol_PROTOCOL_UDP, doormanv1.Protocol_PROTOCOL_SCTP:
	default:
		return fmt.Errorf("protocol %d not supported", sp.GetProtocol())
	}
	family := sp.GetFamily()
	switch family {
	case doormanv1.IPFamily_IP_FAMILY_IPV4, doormanv1.IPFamily_IP_FAMILY_IPV6:
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
		p, err := parsePrefix(r)
		if err != nil {
			return fmt.Errorf("load balancer source range: %w", err)
		}
		if familyOf(p.Addr()) != family {
			return fmt.Errorf("load balancer source range %q is not %s", r, doormanv1.FamilyName(family))
		}
	}
	if err := checkEndpoints("endpoint", sp.GetEndpoints(), family); err != nil {
		return err
	}
	if err := checkEndpoints("cluster endpoint", sp.GetClusterEndpoints(), family); err != nil {
		return err
	}
	return checkEndpoints("local endpoint", sp.GetLocalEndpoints(), family)
}

func checkEndpoints(what string, eps []*doormanv1.Endpoint, family doormanv1.IPFamily) error {
	for i, ep := range eps {
		if ep == nil {
			return fmt.Errorf("%s %d: empty", what, i)
		}
		if err := checkAddr(what, ep.GetIp(), family); err != nil {
			return err
		}
		if err := checkPort(what+" "+ep.GetIp()+" port", ep.GetPort(), false); err != nil {
			return err
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

func checkAddr(what, s string, family doormanv1.IPFamily) error {
	a, err := parseAddr(s)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if familyOf(a) != family {
		return fmt.Errorf("%s %q is not %s", what, s, doormanv1.FamilyName(family))
	}
	return nil
}

// parseAddr accepts a plain IPv4 or IPv6 address: no zone, and no
// IPv4-mapped IPv6 form, whose family would be ambiguous.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	if a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("IP address %q: zones and IPv4-mapped IPv6 addresses are not allowed", s)
	}
	return a, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("CIDR %q: IPv4-mapped IPv6 prefixes are not allowed", s)
	}
	return p, nil
}

func familyOf(a netip.Addr) doormanv1.IPFamily {
	if a.Is4() {
		return doormanv1.IPFamily_IP_FAMILY_IPV4
	}
	return doormanv1.IPFamily_IP_FAMILY_IPV6
}
