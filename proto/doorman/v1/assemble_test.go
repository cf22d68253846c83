package doormanv1

import (
	"strings"
	"testing"
)

func byNodePort() *ServicePort {
	return &ServicePort{
		Namespace: "ns", Name: "web", PortName: "http", Port: 80, Protocol: Protocol_PROTOCOL_TCP, Family: IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.0.0.1", NodePort: 30080, ExternalPolicyLocal: true, EndpointsByNode: true,
	}
}

// A value of endpoints sent by node holds what assemble.go says and
// nothing else; ValidateServicePort says which field is at fault.
func TestValidateByNode(t *testing.T) {
	eps := []*Endpoint{{Ip: "10.1.0.1", Port: 8080}}
	tests := []struct {
		name, err string
		sp        *ServicePort
	}{
		{"port sent by node", "", byNodePort()},
		{"shard", "", NewShard(byNodePort(), "n1", eps)},
		{"shard of endpoints without a node", "", NewShard(byNodePort(), "", eps)},
		{"port sent by node with endpoints", "endpoints on a service port whose endpoints are sent by node", func() *ServicePort {
			p := byNodePort()
			p.LocalEndpoints = eps
			return p
		}()},
		{"cluster endpoints asked of a port sent whole", "assemble_cluster_endpoints on a service port whose endpoints are not sent by node", func() *ServicePort {
			p := byNodePort()
			p.EndpointsByNode, p.AssembleClusterEndpoints = false, true
			return p
		}()},
		{"shard with a cluster IP", "a shard holds fields other than its identity, node and endpoints", func() *ServicePort {
			s := NewShard(byNodePort(), "n1", eps)
			s.ClusterIp = "10.0.0.1"
			return s
		}()},
		{"shard with local endpoints", "a shard holds fields other than", func() *ServicePort {
			s := NewShard(byNodePort(), "n1", eps)
			s.LocalEndpoints = eps
			return s
		}()},
		{"shard node holding the separator", `shard node "n@1" holds "@"`, NewShard(byNodePort(), "n@1", eps)},
		{"shard node on a port", `shard node "n1" on a service port that is not a shard`, func() *ServicePort {
			p := byNodePort()
			p.ShardNode = "n1"
			return p
		}()},
		{"shard endpoint of the other family", `endpoint "fd00::1" is not ipv4`, NewShard(byNodePort(), "n1", []*Endpoint{{Ip: "fd00::1", Port: 8080}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateServicePort(tt.sp)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one saying %q", err, tt.err)
			}
		})
	}
	if got, want := ServicePortKey(NewShard(byNodePort(), "n1", eps)), "ns/web:http/tcp/ipv4@n1"; got != want {
		t.Errorf("shard key %q, want %q", got, want)
	}
	if parent, ok := ShardParent("ns/web:http/tcp/ipv4@n1"); !ok || parent != "ns/web:http/tcp/ipv4" {
		t.Errorf("ShardParent = %q, %v", parent, ok)
	}
}

// Assembly ignores shards of another port and a shard sent under another
// node's name, and counts an endpoint listed twice once, ready if either
// copy is.
func TestAssembleServicePort(t *testing.T) {
	port := byNodePort()
	other := byNodePort()
	other.Name = "other"
	shards := []*ServicePort{
		NewShard(port, "n1", []*Endpoint{{Ip: "10.1.0.2", Port: 8080}, {Ip: "10.1.0.1", Port: 8080, Terminating: true}}),
		NewShard(port, "n2", []*Endpoint{{Ip: "10.1.0.1", Port: 8080}}),
		NewShard(other, "n1", []*Endpoint{{Ip: "10.9.0.9", Port: 8080}}),
	}
	got := AssembleServicePort(port, shards, "n1")
	if got.GetEndpointsByNode() || port.GetEndpoints() != nil {
		t.Fatalf("assembled %v from %v", got, port)
	}
	var all, local []string
	for _, ep := range got.GetEndpoints() {
		all = append(all, ep.GetIp())
		if ep.GetTerminating() {
			t.Errorf("endpoint %s marked terminating: a ready copy exists", ep.GetIp())
		}
	}
	for _, ep := range got.GetLocalEndpoints() {
		local = append(local, ep.GetIp())
	}
	if strings.Join(all, ",") != "10.1.0.1,10.1.0.2" {
		t.Errorf("endpoints %v, want 10.1.0.1,10.1.0.2", all)
	}
	// n1's own: 10.1.0.2 ready; its terminating copy of 10.1.0.1 is not
	// used while a ready endpoint exists.
	if strings.Join(local, ",") != "10.1.0.2" {
		t.Errorf("local endpoints %v, want 10.1.0.2", local)
	}
}
