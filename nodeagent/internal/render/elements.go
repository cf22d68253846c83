package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Element is one element of a set or map, in the kernel's byte layout:
// every field of a concatenation padded to 4 bytes, the numgen index in host
// byte order (numgen writes it so), addresses and ports in network order.
type Element struct {
	Set string
	Key []byte
	// Value of a map element ("address . port"); nil for sets and vmaps.
	Value []byte
	// Verdict of a verdict-map element.
	Verdict *expr.Verdict
	// Shared elements may be owned by several entries (a ClusterIP with
	// several ports); the dataplane counts owners and removes the element
	// with the last one. Other elements have exactly one owner.
	Shared bool
}

// ID identifies the element within the table: set name and key.
func (e Element) ID() string { return e.Set + "\x00" + string(e.Key) }

// SameValue reports whether two elements with the same ID map to the same
// value.
func (e Element) SameValue(o Element) bool {
	if !bytes.Equal(e.Value, o.Value) {
		return false
	}
	if (e.Verdict == nil) != (o.Verdict == nil) {
		return false
	}
	return e.Verdict == nil || (e.Verdict.Kind == o.Verdict.Kind && e.Verdict.Chain == o.Verdict.Chain)
}

// Objects are what one view entry owns in the table.
type Objects struct {
	Elements []Element
	// Chains are the per-endpoint-count chains the elements jump to; they
	// must exist before the elements are added.
	Chains []string
}

// Entry renders one view entry: the Node entry gives the NodePort
// addresses, a ServicePort entry its dispatch, endpoint and reject elements.
// A nil entry owns nothing. Bad input gets an error naming the entry.
func Entry(e *doormanv1.Entry) (Objects, error) {
	if e == nil {
		return Objects{}, nil
	}
	switch v := e.GetValue().(type) {
	case *doormanv1.Entry_Node:
		objs, err := nodeObjects(v.Node)
		if err != nil {
			return Objects{}, fmt.Errorf("entry %q: %w", e.GetKey(), err)
		}
		return objs, nil
	case *doormanv1.Entry_ServicePort:
		objs, err := servicePortObjects(v.ServicePort)
		if err != nil {
			return Objects{}, fmt.Errorf("entry %q: %w", e.GetKey(), err)
		}
		return objs, nil
	}
	return Objects{}, fmt.Errorf("entry %q: no value", e.GetKey())
}

func nodeObjects(n *doormanv1.Node) (Objects, error) {
	var objs Objects
	for _, s := range n.GetNodeportAddresses() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Objects{}, fmt.Errorf("nodeport address %q: %w", s, err)
		}
		a = a.Unmap()
		set := SetNodePortIPs
		if a.Is6() {
			set = SetNodePortIPs6
		}
		objs.Elements = append(objs.Elements, Element{Set: set, Key: a.AsSlice(), Shared: true})
	}
	return objs, nil
}

// per-family names.
type familyNames struct {
	clusterIPs, serviceIPs, serviceNodePorts, serviceEndpoints, nodePortEndpoints string
	noEndpointServices, noEndpointNodePorts                                       string
}

var (
	names4 = familyNames{SetClusterIPs, MapServiceIPs, MapServiceNodePorts, MapServiceEndpoints, MapNodePortEndpoints, MapNoEndpointServices, MapNoEndpointNodePorts}
	names6 = familyNames{SetClusterIPs6, MapServiceIPs6, MapServiceNodePorts6, MapServiceEndpoints6, MapNodePortEndpoints6, MapNoEndpointServices6, MapNoEndpointNodePorts6}
)

func protoNumber(p doormanv1.Protocol) (byte, error) {
	switch p {
	case doormanv1.Protocol_PROTOCOL_TCP:
		return unix.IPPROTO_TCP, nil
	case doormanv1.Protocol_PROTOCOL_UDP:
		return unix.IPPROTO_UDP, nil
	case doormanv1.Protocol_PROTOCOL_SCTP:
		return unix.IPPROTO_SCTP, nil
	}
	return 0, fmt.Errorf("protocol %v not supported", p)
}

func parseAddr(s string, v6 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if !v6 {
		a = a.Unmap()
	}
	if a.Is6() != v6 || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an address of the entry's family", s)
	}
	return a, nil
}

func checkPort(what string, p uint32) error {
	if p == 0 || p > 65535 {
		return fmt.Errorf("%s %d out of range", what, p)
	}
	return nil
}

// Field encoders: each field of a concatenation takes a multiple of 4 bytes.
func putAddr(b []byte, a netip.Addr) []byte { return append(b, a.AsSlice()...) }
func putProto(b []byte, p byte) []byte      { return append(b, p, 0, 0, 0) }
func putPort(b []byte, p uint32) []byte     { return append(b, byte(p>>8), byte(p), 0, 0) }
func putIndex(b []byte, i int) []byte       { return binary.NativeEndian.AppendUint32(b, uint32(i)) }

func gotoChain(name string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: name} }

func servicePortObjects(sp *doormanv1.ServicePort) (Objects, error) {
	var names familyNames
	var v6 bool
	switch sp.GetFamily() {
	case doormanv1.IPFamily_IP_FAMILY_IPV4:
		names = names4
	case doormanv1.IPFamily_IP_FAMILY_IPV6:
		names, v6 = names6, true
	default:
		return Objects{}, fmt.Errorf("IP family %v not supported", sp.GetFamily())
	}
	proto, err := protoNumber(sp.GetProtocol())
	if err != nil {
		return Objects{}, err
	}
	if err := checkPort("port", sp.GetPort()); err != nil {
		return Objects{}, err
	}
	if np := sp.GetNodePort(); np != 0 {
		if err := checkPort("nodePort", np); err != nil {
			return Objects{}, err
		}
	}
	type endpoint struct {
		addr netip.Addr
		port uint32
	}
	eps := make([]endpoint, 0, len(sp.GetEndpoints()))
	for _, ep := range sp.GetEndpoints() {
		a, err := parseAddr(ep.GetIp(), v6)
		if err != nil {
			return Objects{}, fmt.Errorf("endpoint %q: %w", ep.GetIp(), err)
		}
		if err := checkPort("endpoint port", ep.GetPort()); err != nil {
			return Objects{}, fmt.Errorf("endpoint %q: %w", ep.GetIp(), err)
		}
		eps = append(eps, endpoint{a, ep.GetPort()})
	}
	k := len(eps)

	var objs Objects
	// One backing array for every key and value of the entry.
	buf := make([]byte, 0, 64+k*(2*28+20))
	carve := func(start int) []byte { return buf[start:len(buf):len(buf)] }

	if s := sp.GetClusterIp(); s != "" && s != "None" {
		cip, err := parseAddr(s, v6)
		if err != nil {
			return Objects{}, fmt.Errorf("clusterIP: %w", err)
		}
		start := len(buf)
		buf = putAddr(buf, cip)
		objs.Elements = append(objs.Elements, Element{Set: names.clusterIPs, Key: carve(start), Shared: true})

		start = len(buf)
		buf = putPort(putProto(putAddr(buf, cip), proto), sp.GetPort())
		frontend := carve(start)
		if k == 0 {
			objs.Elements = append(objs.Elements, Element{Set: names.noEndpointServices, Key: frontend, Verdict: gotoChain(ChainReject)})
		} else {
			objs.Elements = append(objs.Elements, Element{Set: names.serviceIPs, Key: frontend, Verdict: gotoChain(ServiceChainName(k))})
			objs.Chains = append(objs.Chains, ServiceChainName(k))
			for i, ep := range eps {
				start = len(buf)
				buf = putIndex(append(buf, frontend...), i)
				key := carve(start)
				start = len(buf)
				buf = putPort(putAddr(buf, ep.addr), ep.port)
				objs.Elements = append(objs.Elements, Element{Set: names.serviceEndpoints, Key: key, Value: carve(start)})
			}
		}
	}

	if np := sp.GetNodePort(); np != 0 {
		start := len(buf)
		buf = putPort(putProto(buf, proto), np)
		frontend := carve(start)
		if k == 0 {
			objs.Elements = append(objs.Elements, Element{Set: names.noEndpointNodePorts, Key: frontend, Verdict: gotoChain(ChainReject)})
		} else {
			objs.Elements = append(objs.Elements, Element{Set: names.serviceNodePorts, Key: frontend, Verdict: gotoChain(NodePortChainName(k))})
			objs.Chains = append(objs.Chains, NodePortChainName(k))
			for i, ep := range eps {
				start = len(buf)
				buf = putIndex(append(buf, frontend...), i)
				key := carve(start)
				start = len(buf)
				buf = putPort(putAddr(buf, ep.addr), ep.port)
				objs.Elements = append(objs.Elements, Element{Set: names.nodePortEndpoints, Key: key, Value: carve(start)})
			}
		}
	}
	return objs, nil
}

// Diff returns what moves the table from old's objects to new's: elements
// to delete and elements to add. An element whose value changed is in both
// (the kernel has no in-place update of a map element).
func Diff(old, new Objects) (del, add []Element) {
	if len(old.Elements) == 0 {
		return nil, new.Elements
	}
	if len(new.Elements) == 0 {
		return old.Elements, nil
	}
	oldByID := make(map[string]Element, len(old.Elements))
	for _, e := range old.Elements {
		oldByID[e.ID()] = e
	}
	for _, e := range new.Elements {
		id := e.ID()
		o, ok := oldByID[id]
		if ok {
			delete(oldByID, id)
			if o.SameValue(e) {
				continue
			}
			del = append(del, o)
		}
		add = append(add, e)
	}
	// Keep the order of old for what is left.
	for _, e := range old.Elements {
		if _, ok := oldByID[e.ID()]; ok {
			del = append(del, e)
		}
	}
	return del, add
}
