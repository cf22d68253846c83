package doormanv1

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sealed wraps a value in an entry under its key, with its digest.
func sealed(t *testing.T, v proto.Message) *Entry {
	t.Helper()
	d, err := ValueDigest(v)
	if err != nil {
		t.Fatal(err)
	}
	switch v := v.(type) {
	case *ServicePort:
		return &Entry{Key: ServicePortKey(v), Digest: d, Value: &Entry_ServicePort{ServicePort: v}}
	case *Node:
		return &Entry{Key: NodeKey, Digest: d, Value: &Entry_Node{Node: v}}
	}
	t.Fatalf("no entry for %T", v)
	return nil
}

func validPort(family IPFamily) *ServicePort {
	if family == IPFamily_IP_FAMILY_IPV6 {
		return &ServicePort{
			Namespace: "default", Name: "web", PortName: "http", Protocol: Protocol_PROTOCOL_TCP, Family: family,
			ClusterIp: "fd00::10", Port: 80, NodePort: 30080, HealthCheckNodePort: 31000,
			ExternalIps: []string{"2001:db8::1"}, LoadBalancerIps: []string{"2001:db8::2"},
			LoadBalancerSourceRanges: []string{"2001:db8::/32", "::/0"},
			AffinityTimeoutSeconds:   AffinityTimeoutMax,
			Endpoints:                []*Endpoint{{Ip: "fd00:1::1", Port: 8080}},
			LocalEndpoints:           []*Endpoint{{Ip: "fd00:1::2", Port: 8080}},
			ClusterEndpoints:         []*Endpoint{{Ip: "fd00:1::3", Port: 8080}},
		}
	}
	return &ServicePort{
		Namespace: "default", Name: "web", PortName: "http", Protocol: Protocol_PROTOCOL_TCP, Family: IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80, NodePort: 30080, HealthCheckNodePort: 31000,
		ExternalIps: []string{"192.0.2.1"}, LoadBalancerIps: []string{"198.51.100.1"},
		LoadBalancerSourceRanges: []string{"10.0.0.0/8", "0.0.0.0/0"},
		AffinityTimeoutSeconds:   10800,
		Endpoints:                []*Endpoint{{Ip: "10.244.1.1", Port: 8080}},
		LocalEndpoints:           []*Endpoint{{Ip: "10.244.1.2", Port: 8080}},
		ClusterEndpoints:         []*Endpoint{{Ip: "10.244.1.3", Port: 8080}},
	}
}

func validNode() *Node {
	return &Node{
		Name: "node-1", NodeportAddresses: []string{"192.168.0.1", "fd00:192::1"}, Zone: "a",
		PodCidrs: []string{"10.244.1.0/24", "fd00:244:1::/64"}, ServiceCidrs: []string{"10.96.0.0/12", "fd00:10:96::/108"},
	}
}

// TestValidateServicePort: every field, in both families, with a valid
// value, one that does not parse, one of the other family and its
// IPv4-mapped IPv6 form; the error names the entry and the field's value.
func TestValidateServicePort(t *testing.T) {
	type edit func(*ServicePort)
	cases := []struct {
		name   string
		family IPFamily
		edit   edit
		want   string // substring of the error; "" for valid
	}{
		{name: "valid IPv4", family: IPFamily_IP_FAMILY_IPV4},
		{name: "valid IPv6", family: IPFamily_IP_FAMILY_IPV6},
		{name: "no cluster IP", edit: func(sp *ServicePort) { sp.ClusterIp = "" }},
		{name: "no namespace", edit: func(sp *ServicePort) { sp.Namespace = "" }, want: "without a namespace or name"},
		{name: "no name", edit: func(sp *ServicePort) { sp.Name = "" }, want: "without a namespace or name"},
		{name: "protocol unset", edit: func(sp *ServicePort) { sp.Protocol = 0 }, want: "protocol 0 not supported"},
		{name: "protocol unknown", edit: func(sp *ServicePort) { sp.Protocol = 9 }, want: "protocol 9 not supported"},
		{name: "family unset", edit: func(sp *ServicePort) { sp.Family = 0 }, want: "IP family 0 not supported"},
		{name: "port 0", edit: func(sp *ServicePort) { sp.Port = 0 }, want: "port 0 out of range"},
		{name: "port 65536", edit: func(sp *ServicePort) { sp.Port = 65536 }, want: "port 65536 out of range"},
		{name: "node port 0 is none", edit: func(sp *ServicePort) { sp.NodePort = 0 }},
		{name: "node port 65536", edit: func(sp *ServicePort) { sp.NodePort = 65536 }, want: "node port 65536 out of range"},
		{name: "health check port 70000", edit: func(sp *ServicePort) { sp.HealthCheckNodePort = 70000 }, want: "health check node port 70000 out of range"},
		{name: "affinity above a day", edit: func(sp *ServicePort) { sp.AffinityTimeoutSeconds = AffinityTimeoutMax + 1 }, want: "affinity timeout 86401s above 86400s"},
		{name: "cluster IP does not parse", edit: func(sp *ServicePort) { sp.ClusterIp = "10.96.0.300" }, want: `cluster IP: invalid IP address "10.96.0.300"`},
		{name: "cluster IP None", edit: func(sp *ServicePort) { sp.ClusterIp = "None" }, want: `cluster IP: invalid IP address "None"`},
		{name: "cluster IP other family", edit: func(sp *ServicePort) { sp.ClusterIp = "fd00::10" }, want: `cluster IP "fd00::10" is not ipv4`},
		{name: "cluster IP with a zone", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.ClusterIp = "fe80::1%eth0" }, want: `cluster IP: IP address "fe80::1%eth0": zones`},
		{name: "cluster IP IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.ClusterIp = "::ffff:10.96.0.10" }, want: `cluster IP: IP address "::ffff:10.96.0.10": zones and IPv4-mapped`},
		{name: "cluster IP IPv4-mapped in an IPv4 entry", edit: func(sp *ServicePort) { sp.ClusterIp = "::ffff:10.96.0.10" }, want: "IPv4-mapped"},
		{name: "external IP does not parse", edit: func(sp *ServicePort) { sp.ExternalIps = []string{"example.com"} }, want: `external IP: invalid IP address "example.com"`},
		{name: "external IP other family", edit: func(sp *ServicePort) { sp.ExternalIps = []string{"2001:db8::1"} }, want: `external IP "2001:db8::1" is not ipv4`},
		{name: "external IP IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.ExternalIps = []string{"::ffff:192.0.2.1"} }, want: `external IP: IP address "::ffff:192.0.2.1"`},
		{name: "load balancer IP other family", edit: func(sp *ServicePort) { sp.LoadBalancerIps = []string{"fd00::1"} }, want: `load balancer IP "fd00::1" is not ipv4`},
		{name: "load balancer IP IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.LoadBalancerIps = []string{"::ffff:198.51.100.1"} }, want: `load balancer IP: IP address "::ffff:198.51.100.1"`},
		{name: "source range does not parse", edit: func(sp *ServicePort) { sp.LoadBalancerSourceRanges = []string{"10.0.0.0/33"} }, want: `load balancer source range: invalid CIDR "10.0.0.0/33"`},
		{name: "source range without length", edit: func(sp *ServicePort) { sp.LoadBalancerSourceRanges = []string{"10.0.0.0"} }, want: `invalid CIDR "10.0.0.0"`},
		{name: "source range other family", edit: func(sp *ServicePort) { sp.LoadBalancerSourceRanges = []string{"fd00::/64"} }, want: `load balancer source range "fd00::/64" is not ipv4`},
		{name: "source range IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.LoadBalancerSourceRanges = []string{"::ffff:10.0.0.0/104"} }, want: `load balancer source range: CIDR "::ffff:10.0.0.0/104": IPv4-mapped IPv6 prefixes are not allowed`},
		{name: "source range IPv4-mapped in an IPv4 entry", edit: func(sp *ServicePort) { sp.LoadBalancerSourceRanges = []string{"::ffff:10.0.0.0/104"} }, want: "IPv4-mapped"},
		{name: "endpoint does not parse", edit: func(sp *ServicePort) { sp.Endpoints[0].Ip = "10.244.1" }, want: `endpoint: invalid IP address "10.244.1"`},
		{name: "endpoint other family", edit: func(sp *ServicePort) { sp.Endpoints[0].Ip = "fd00::1" }, want: `endpoint "fd00::1" is not ipv4`},
		{name: "endpoint IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.Endpoints[0].Ip = "::ffff:10.244.1.1" }, want: `endpoint: IP address "::ffff:10.244.1.1"`},
		{name: "endpoint port 0", edit: func(sp *ServicePort) { sp.Endpoints[0].Port = 0 }, want: "endpoint 10.244.1.1 port 0 out of range"},
		{name: "endpoint nil", edit: func(sp *ServicePort) { sp.Endpoints = append(sp.Endpoints, nil) }, want: "endpoint 1: empty"},
		{name: "local endpoint IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.LocalEndpoints[0].Ip = "::ffff:10.244.1.2" }, want: `local endpoint: IP address "::ffff:10.244.1.2"`},
		{name: "local endpoint other family", edit: func(sp *ServicePort) { sp.LocalEndpoints[0].Ip = "fd00::2" }, want: `local endpoint "fd00::2" is not ipv4`},
		{name: "cluster endpoint IPv4-mapped", family: IPFamily_IP_FAMILY_IPV6, edit: func(sp *ServicePort) { sp.ClusterEndpoints[0].Ip = "::ffff:10.244.1.3" }, want: `cluster endpoint: IP address "::ffff:10.244.1.3"`},
		{name: "cluster endpoint port 65536", edit: func(sp *ServicePort) { sp.ClusterEndpoints[0].Port = 65536 }, want: "cluster endpoint 10.244.1.3 port 65536 out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			family := tc.family
			if family == 0 {
				family = IPFamily_IP_FAMILY_IPV4
			}
			sp := validPort(family)
			if tc.edit != nil {
				tc.edit(sp)
			}
			e := sealed(t, sp)
			err := ValidateEntry(e)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateEntry: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "entry "+`"`+e.GetKey()+`"`) {
				t.Fatalf("ValidateEntry error = %v, want one naming %q and containing %q", err, e.GetKey(), tc.want)
			}
			if vErr := ValidateServicePort(sp); vErr == nil || !strings.Contains(vErr.Error(), tc.want) {
				t.Errorf("ValidateServicePort error = %v, want one containing %q", vErr, tc.want)
			}
		})
	}
}

// TestValidateNode: the Node entry's fields, IPv4-mapped forms included.
func TestValidateNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Node)
		want string
	}{
		{name: "valid"},
		{name: "no Pod or Service CIDRs", edit: func(n *Node) { n.PodCidrs, n.ServiceCidrs = nil, nil }},
		{name: "no name", edit: func(n *Node) { n.Name = "" }, want: "node without a name"},
		{name: "nodeport address does not parse", edit: func(n *Node) { n.NodeportAddresses = []string{"300.1.1.1"} }, want: `nodeport address: invalid IP address "300.1.1.1"`},
		{name: "nodeport address IPv4-mapped", edit: func(n *Node) { n.NodeportAddresses = []string{"::ffff:192.168.0.1"} }, want: `nodeport address: IP address "::ffff:192.168.0.1": zones and IPv4-mapped`},
		{name: "pod CIDR does not parse", edit: func(n *Node) { n.PodCidrs = []string{"10.244.1.0/40"} }, want: `pod CIDR: invalid CIDR "10.244.1.0/40"`},
		{name: "pod CIDR IPv4-mapped", edit: func(n *Node) { n.PodCidrs = []string{"::ffff:10.244.1.0/120"} }, want: `pod CIDR: CIDR "::ffff:10.244.1.0/120": IPv4-mapped`},
		{name: "service CIDR IPv4-mapped", edit: func(n *Node) { n.ServiceCidrs = []string{"::ffff:10.96.0.0/108"} }, want: `service CIDR: CIDR "::ffff:10.96.0.0/108": IPv4-mapped`},
		{name: "service CIDR with a zone", edit: func(n *Node) { n.ServiceCidrs = []string{"fe80::%eth0/64"} }, want: `service CIDR: invalid CIDR "fe80::%eth0/64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := validNode()
			if tc.edit != nil {
				tc.edit(n)
			}
			err := ValidateEntry(sealed(t, n))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateEntry: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `entry "node"`) {
				t.Fatalf("ValidateEntry error = %v, want one naming the node entry and containing %q", err, tc.want)
			}
		})
	}
}

// TestValidateEntryFrame: what ties an entry to its key and digest.
func TestValidateEntryFrame(t *testing.T) {
	web := sealed(t, validPort(IPFamily_IP_FAMILY_IPV4))
	wrongKey := proto.CloneOf(web)
	wrongKey.Key = "default/web:other/tcp/ipv4"
	wrongDigest := proto.CloneOf(web)
	wrongDigest.Digest++
	portUnderNodeKey := proto.CloneOf(web)
	portUnderNodeKey.Key = NodeKey
	nodeElsewhere := sealed(t, validNode())
	nodeElsewhere.Key = "default/node:80/tcp/ipv4"
	for _, tc := range []struct {
		name string
		e    *Entry
		want string
	}{
		{"nil", nil, "nil entry"},
		{"empty key", &Entry{}, "entry with an empty key"},
		{"no value", &Entry{Key: "default/x:80/tcp/ipv4"}, `entry "default/x:80/tcp/ipv4": no value`},
		{"key does not match value", wrongKey, `entry "default/web:other/tcp/ipv4": key does not match its value, which belongs under "default/web:http/tcp/ipv4"`},
		{"digest does not match value", wrongDigest, `entry "default/web:http/tcp/ipv4": digest`},
		{"service port under the node key", portUnderNodeKey, `entry "node": the key is reserved`},
		{"node outside the node key", nodeElsewhere, `entry "default/node:80/tcp/ipv4": a node value is only allowed`},
		{"empty node value", &Entry{Key: NodeKey, Value: &Entry_Node{}}, `entry "node": empty node value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidateEntry(tc.e); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateEntry error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestValidateEncodedEntry: an entry checked on its encoding gives what
// ValidateEntry gives, takes the digest on the value's bytes only when
// the encoding holds the value once, and trusts bytes that hash to the
// digest even where they are not the canonical encoding.
func TestValidateEncodedEntry(t *testing.T) {
	web := sealed(t, validPort(IPFamily_IP_FAMILY_IPV4))
	node := sealed(t, validNode())
	wrongDigest := proto.CloneOf(web)
	wrongDigest.Digest++
	wrongKey := proto.CloneOf(web)
	wrongKey.Key = "default/web:other/tcp/ipv4"
	for _, e := range []*Entry{web, node, wrongDigest, wrongKey, {Key: "default/x:80/tcp/ipv4"}} {
		raw, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		got, want := ValidateEncodedEntry(e, raw), ValidateEntry(e)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Errorf("entry %q: ValidateEncodedEntry = %v, ValidateEntry = %v", e.GetKey(), got, want)
		}
	}

	// The value twice: what decodes is both merged, whatever the last
	// one's bytes hash to.
	other := validPort(IPFamily_IP_FAMILY_IPV4)
	other.Endpoints = []*Endpoint{{Ip: "10.9.9.9", Port: 9}}
	otherBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	twice := proto.CloneOf(web)
	twice.Digest = bytesDigest(otherBytes)
	raw, err := proto.Marshal(twice)
	if err != nil {
		t.Fatal(err)
	}
	raw = protowire.AppendTag(raw, entryServicePortField, protowire.BytesType)
	raw = protowire.AppendBytes(raw, otherBytes)
	decoded := &Entry{}
	if err := proto.Unmarshal(raw, decoded); err != nil {
		t.Fatal(err)
	}
	if err := ValidateEncodedEntry(decoded, raw); err == nil || !strings.Contains(err.Error(), "does not match its value") {
		t.Errorf("value encoded twice, digest of the second: error = %v, want a digest mismatch", err)
	}

	// Bytes that are not the canonical encoding (a zero field written
	// out) but hash to the digest: the digest names the value they decode
	// to, so it is kept; encoded again, the value gives another digest.
	canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(web.GetServicePort())
	if err != nil {
		t.Fatal(err)
	}
	shard := fieldNumber(&ServicePort{}, "shard")
	padded := protowire.AppendVarint(protowire.AppendTag(bytes.Clone(canonical), shard, protowire.VarintType), 0)
	spelled, err := proto.Marshal(&Entry{Key: web.GetKey(), Digest: bytesDigest(padded)})
	if err != nil {
		t.Fatal(err)
	}
	spelled = protowire.AppendTag(spelled, entryServicePortField, protowire.BytesType)
	spelled = protowire.AppendBytes(spelled, padded)
	decoded = &Entry{}
	if err := proto.Unmarshal(spelled, decoded); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(decoded.GetServicePort(), web.GetServicePort()) {
		t.Fatalf("padded value decodes to %v, want %v", decoded.GetServicePort(), web.GetServicePort())
	}
	if err := ValidateEncodedEntry(decoded, spelled); err != nil {
		t.Errorf("padded value whose bytes hash to the digest: %v", err)
	}
	if err := ValidateEntry(decoded); err == nil {
		t.Errorf("padded value's digest taken as the canonical encoding's")
	}
}

// fieldNumber is the number of m's field called name.
func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// TestEntryValueFields: the value fields' numbers are view.proto's.
func TestEntryValueFields(t *testing.T) {
	if got := fieldNumber(&Entry{}, "service_port"); got != entryServicePortField {
		t.Errorf("service_port is field %d, not %d", got, entryServicePortField)
	}
	if got := fieldNumber(&Entry{}, "node"); got != entryNodeField {
		t.Errorf("node is field %d, not %d", got, entryNodeField)
	}
}
