package doormanv1

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Endpoints sent by node. A Service port with a Local traffic policy needs,
// on each node, every endpoint and that node's own; sent as one entry per
// node, each holding every endpoint, it costs nodes × endpoints. Sent by
// node, it is one entry every node holds alike (endpoints_by_node, no
// endpoints) and one shard per node with endpoints (shard, that node's
// endpoints): nodes + endpoints, and an endpoint's change is one shard's.
// AssembleServicePort is the one definition of what a node programs from
// them; the control plane's own choice for a node (a port sent whole) is
// the same value.

// ShardSeparator separates a port's key from a shard's node in the
// shard's key. Node names are DNS subdomains: they never hold it.
const ShardSeparator = "@"

// ShardKey is the key of the shard of node for the port keyed portKey.
func ShardKey(portKey, node string) string { return portKey + ShardSeparator + node }

// ShardParent is the key of the port a shard key belongs to; false for a
// key that is not a shard's.
func ShardParent(key string) (string, bool) {
	i := strings.LastIndex(key, ShardSeparator)
	if i < 0 {
		return "", false
	}
	return key[:i], true
}

// NewShard returns the shard of node for port: its identity, node and
// endpoints (ready ones with terminating false, serving and terminating
// ones with terminating true).
func NewShard(port *ServicePort, node string, endpoints []*Endpoint) *ServicePort {
	return &ServicePort{
		Namespace: port.GetNamespace(),
		Name:      port.GetName(),
		PortName:  port.GetPortName(),
		Port:      port.GetPort(),
		Protocol:  port.GetProtocol(),
		Family:    port.GetFamily(),
		Shard:     true,
		ShardNode: node,
		Endpoints: endpoints,
	}
}

// validateByNode checks the fields of endpoints sent by node: a shard
// holds its identity, node and endpoints and nothing else; a port sent
// by node holds no endpoints.
func validateByNode(sp *ServicePort) error {
	if !sp.GetShard() {
		if sp.GetShardNode() != "" {
			return fmt.Errorf("shard node %q on a service port that is not a shard", sp.GetShardNode())
		}
		if sp.GetEndpointsByNode() && (len(sp.GetEndpoints()) > 0 || len(sp.GetLocalEndpoints()) > 0 || len(sp.GetClusterEndpoints()) > 0) {
			return errors.New("endpoints on a service port whose endpoints are sent by node")
		}
		if sp.GetAssembleClusterEndpoints() && !sp.GetEndpointsByNode() {
			return errors.New("assemble_cluster_endpoints on a service port whose endpoints are not sent by node")
		}
		return nil
	}
	if strings.Contains(sp.GetShardNode(), ShardSeparator) {
		return fmt.Errorf("shard node %q holds %q", sp.GetShardNode(), ShardSeparator)
	}
	only := &ServicePort{
		Namespace: sp.GetNamespace(), Name: sp.GetName(), PortName: sp.GetPortName(), Port: sp.GetPort(),
		Protocol: sp.GetProtocol(), Family: sp.GetFamily(), Shard: true, ShardNode: sp.GetShardNode(), Endpoints: sp.GetEndpoints(),
	}
	if !proto.Equal(only, sp) {
		return errors.New("a shard holds fields other than its identity, node and endpoints")
	}
	return nil
}

// AssembleServicePort is the port node programs, from port (sent with
// endpoints_by_node) and the port's shards: the endpoints of the whole
// cluster and of node are each the ready ones, or when there is none the
// serving and terminating ones; internalTrafficPolicy Local gives
// endpoints the node's own (and cluster_endpoints every one, with
// assemble_cluster_endpoints), externalTrafficPolicy Local gives
// local_endpoints the node's own. Endpoints are ordered by address and
// port; one listed twice counts once, ready if either is. Shards of
// another port are ignored. port itself is not modified.
func AssembleServicePort(port *ServicePort, shards []*ServicePort, node string) *ServicePort {
	key := ServicePortKey(port)
	var all, own []candidate
	for _, s := range shards {
		if !s.GetShard() || ServicePortKey(s) != ShardKey(key, s.GetShardNode()) {
			continue
		}
		mine := node != "" && s.GetShardNode() == node
		for _, ep := range s.GetEndpoints() {
			a, err := ParseAddr(ep.GetIp())
			if err != nil {
				continue // ValidateEntry refuses such a shard
			}
			c := candidate{addr: a, ep: ep}
			all = append(all, c)
			if mine {
				own = append(own, c)
			}
		}
	}
	everywhere := chooseEndpoints(all)
	local := chooseEndpoints(own)
	out := proto.CloneOf(port)
	out.EndpointsByNode, out.AssembleClusterEndpoints = false, false
	out.Endpoints, out.LocalEndpoints, out.ClusterEndpoints = everywhere, nil, nil
	if port.GetInternalPolicyLocal() {
		out.Endpoints = local
		if port.GetAssembleClusterEndpoints() {
			out.ClusterEndpoints = everywhere
		}
	}
	if port.GetExternalPolicyLocal() {
		out.LocalEndpoints = local
	}
	return out
}

type candidate struct {
	addr netip.Addr
	ep   *Endpoint
}

// chooseEndpoints returns the ready candidates, or when there is none the
// serving and terminating ones, sorted by address and port, each once.
func chooseEndpoints(cands []candidate) []*Endpoint {
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ep.GetPort(), b.ep.GetPort()); c != 0 {
			return c
		}
		// Ready (not terminating) first: it is the one kept.
		return cmp.Compare(rank(a), rank(b))
	})
	cands = slices.CompactFunc(cands, func(a, b candidate) bool { return a.addr == b.addr && a.ep.GetPort() == b.ep.GetPort() })
	var ready, terminating []*Endpoint
	for _, c := range cands {
		ep := &Endpoint{Ip: c.ep.GetIp(), Port: c.ep.GetPort(), Terminating: c.ep.GetTerminating()}
		if ep.Terminating {
			terminating = append(terminating, ep)
		} else {
			ready = append(ready, ep)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// rank orders a ready candidate before a terminating one.
func rank(c candidate) int {
	if c.ep.GetTerminating() {
		return 1
	}
	return 0
}
