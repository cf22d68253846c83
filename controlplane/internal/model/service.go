package model

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

const (
	// LabelServiceProxyName marks a Service another proxy owns.
	LabelServiceProxyName = compact.LabelServiceProxyName
	// LabelHeadless marks a headless Service and its EndpointSlices.
	LabelHeadless = compact.LabelHeadless
	// LabelServiceName names the Service an EndpointSlice belongs to.
	LabelServiceName = compact.LabelServiceName

	defaultAffinityTimeout = 10800
)

// Value is what one key of the view holds on each node: Default, unless the
// node has an override under its name (ByNode) or its zone (ByZone), in that
// order. A value without overrides is the same on every node.
type Value struct {
	Default *doormanv1.ServicePort
	ByZone  map[string]*doormanv1.ServicePort
	ByNode  map[string]*doormanv1.ServicePort
	// Trigger is the trigger time of a port sent by node, and of its
	// shards, which their entries do not carry (the update does, see
	// SyncResponse.trigger_time_unix_nano): the Service's, as
	// trigger_time_unix_nano of a port sent whole. 0 for any other value.
	Trigger int64
}

// For returns the value a node with this name and zone programs.
func (v Value) For(node, zone string) *doormanv1.ServicePort {
	if sp, ok := v.ByNode[node]; ok {
		return sp
	}
	if zone != "" {
		if sp, ok := v.ByZone[zone]; ok {
			return sp
		}
	}
	return v.Default
}

// Skipped reports why a Service is not programmed at all, or "" when it is.
func Skipped(svc *compact.Service) string {
	switch {
	case svc.Type == corev1.ServiceTypeExternalName:
		return "type ExternalName"
	case svc.OtherProxy:
		return "label " + LabelServiceProxyName
	case svc.HeadlessLabel:
		return "label " + LabelHeadless
	case svc.ClusterIPNone:
		return "headless"
	case len(svc.ClusterIPs) == 0:
		return "no cluster IP"
	}
	return ""
}

func hasLabel(labels map[string]string, name string) bool {
	_, ok := labels[name]
	return ok
}

// Ports computes the entries of one Service from its EndpointSlices: one key
// per Service port per IP family. A Service that is skipped (see Skipped)
// has none. An invalid Service yields no entries and an error naming it; an
// invalid EndpointSlice is left out (the others still count) and named in the
// returned error, next to entries that are valid. Every value returned
// passes doormanv1.ValidateServicePort, the check agents make: one that
// would not (a bug here, or input this parse lets through) is not sent;
// the Service then yields no entries and an error naming it and the reason.
func Ports(svc *compact.Service, endpointSlices []*compact.Slice) (map[string]Value, error) {
	return ports(svc, endpointSlices, false)
}

// PortsByNode is Ports with the ports of a Local traffic policy sent by
// node (stream protocol 2, see doormanv1.AssembleServicePort): each is one
// value every node holds, without endpoints, and one value per node with
// endpoints, its shard, under the key doormanv1.ShardKey gives. Assembled
// for a node, they are the value Ports gives that node.
func PortsByNode(svc *compact.Service, endpointSlices []*compact.Slice) (map[string]Value, error) {
	return ports(svc, endpointSlices, true)
}

func ports(svc *compact.Service, endpointSlices []*compact.Slice, byNode bool) (map[string]Value, error) {
	if Skipped(svc) != "" {
		return nil, nil
	}
	id := svc.Namespace + "/" + svc.Name
	base, err := parseService(svc)
	if err != nil {
		return nil, &InvalidServiceError{Service: id, Err: err}
	}
	var errs []error
	var good []*parsedSlice
	for _, s := range endpointSlices {
		ps, err := parseSlice(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpointslice %s/%s of service %s: %w", s.Namespace, s.Name, id, err))
			continue
		}
		if ps != nil {
			good = append(good, ps)
		}
	}
	base.triggerTime = triggerTime(endpointSlices)
	out := make(map[string]Value, len(base.families)*len(svc.Ports))
	for _, fam := range base.families {
		for _, port := range base.ports {
			var values []Value
			if byNode && (base.internalLocal || base.externalLocal) {
				values = base.byNodeValues(fam, port, good)
			} else {
				values = []Value{base.value(fam, port, good)}
			}
			for _, v := range values {
				key := doormanv1.ServicePortKey(v.Default)
				if _, dup := out[key]; dup {
					return nil, &InvalidServiceError{Service: id, Err: fmt.Errorf("two ports map to key %s", key)}
				}
				if err := validValue(key, v); err != nil {
					return nil, &InvalidServiceError{Service: id, Err: err}
				}
				out[key] = v
			}
		}
	}
	return out, errors.Join(errs...)
}

// InvalidServiceError is the error of a Service refused as a whole: it
// has no entries.
type InvalidServiceError struct {
	Service string // "<namespace>/<name>"
	Err     error
}

func (e *InvalidServiceError) Error() string { return "service " + e.Service + ": " + e.Err.Error() }

func (e *InvalidServiceError) Unwrap() error { return e.Err }

// validValue checks every node's value of a key with the agents' own
// check, so that what the control plane sends is what an agent accepts.
func validValue(key string, v Value) error {
	check := func(sp *doormanv1.ServicePort) error {
		if err := doormanv1.ValidateServicePort(sp); err != nil {
			return fmt.Errorf("entry %q: %w", key, err)
		}
		if got := doormanv1.ServicePortKey(sp); got != key {
			return fmt.Errorf("entry %q: a value keyed %q", key, got)
		}
		return nil
	}
	if err := check(v.Default); err != nil {
		return err
	}
	for _, sp := range v.ByNode {
		if err := check(sp); err != nil {
			return err
		}
	}
	for _, sp := range v.ByZone {
		if err := check(sp); err != nil {
			return err
		}
	}
	return nil
}

type family struct {
	family    doormanv1.IPFamily
	clusterIP netip.Addr
}

type port struct {
	name     string
	protocol corev1.Protocol
	proto    doormanv1.Protocol
	port     uint32
	nodePort uint32
}

// service is the part of a Service that does not depend on endpoints.
type service struct {
	namespace, name string
	families        []family
	ports           []port
	externalIPs     []netip.Addr
	lbIPs           []netip.Addr
	sourceRanges    []netip.Prefix
	affinity        uint32
	externalLocal   bool
	internalLocal   bool
	// externallyReachable: the Service has NodePorts, externalIPs or
	// LoadBalancer IPs.
	externallyReachable bool
	healthCheckPort     uint32
	triggerTime         int64
}

// triggerTime is the newest last-change-trigger-time of the slices, in Unix
// nanoseconds (0 when none has one). An unparsable annotation is ignored: it
// only feeds a latency metric.
func triggerTime(in []*compact.Slice) int64 {
	var newest int64
	for _, s := range in {
		newest = max(newest, s.TriggerTime)
	}
	return newest
}

func parseService(svc *compact.Service) (*service, error) {
	s := &service{namespace: svc.Namespace, name: svc.Name}
	if err := s.parseClusterIPs(svc); err != nil {
		return nil, err
	}
	withNodePorts := svc.Type == corev1.ServiceTypeNodePort || svc.Type == corev1.ServiceTypeLoadBalancer
	if err := s.parsePorts(svc.Ports, withNodePorts); err != nil {
		return nil, err
	}
	if err := s.parseExternalAddresses(svc); err != nil {
		return nil, err
	}
	if err := s.parseAffinity(svc); err != nil {
		return nil, err
	}
	if err := s.parseTrafficPolicies(svc, withNodePorts); err != nil {
		return nil, err
	}
	return s, nil
}

// parseClusterIPs reads the ClusterIPs, at most one per family.
func (s *service) parseClusterIPs(svc *compact.Service) error {
	for _, raw := range svc.ClusterIPs {
		a, fam, err := parseIP(raw)
		if err != nil {
			return fmt.Errorf("clusterIP: %w", err)
		}
		for _, f := range s.families {
			if f.family == fam {
				return fmt.Errorf("clusterIPs: two addresses of family %s", doormanv1.FamilyName(fam))
			}
		}
		s.families = append(s.families, family{family: fam, clusterIP: a})
	}
	return nil
}

// parsePorts reads the ports, with their nodePorts when the Service has
// them; a Service needs one port at least.
func (s *service) parsePorts(ports []compact.ServicePort, withNodePorts bool) error {
	for _, p := range ports {
		pp := port{name: p.Name, protocol: p.Protocol}
		if pp.protocol == "" {
			pp.protocol = corev1.ProtocolTCP
		}
		var err error
		if pp.proto, err = parseProtocol(pp.protocol); err != nil {
			return fmt.Errorf("port %q: %w", p.Name, err)
		}
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("port %q: port %d out of range", p.Name, p.Port)
		}
		pp.port = uint32(p.Port)
		// The API server refuses two ports of one protocol and number:
		// their entries would claim the same frontends.
		if slices.ContainsFunc(s.ports, func(o port) bool { return o.proto == pp.proto && o.port == pp.port }) {
			return fmt.Errorf("port %q: port %d/%s listed twice", p.Name, p.Port, pp.protocol)
		}
		if withNodePorts {
			if p.NodePort < 0 || p.NodePort > 65535 {
				return fmt.Errorf("port %q: nodePort %d out of range", p.Name, p.NodePort)
			}
			pp.nodePort = uint32(p.NodePort)
		}
		s.ports = append(s.ports, pp)
	}
	if len(s.ports) == 0 {
		return errors.New("no ports")
	}
	return nil
}

// parseExternalAddresses reads the externalIPs and, for a LoadBalancer,
// its ingress IPs and source ranges.
func (s *service) parseExternalAddresses(svc *compact.Service) error {
	ext := svc.Extra()
	for _, raw := range ext.ExternalIPs {
		a, _, err := parseIP(raw)
		if err != nil {
			return fmt.Errorf("externalIPs: %w", err)
		}
		s.externalIPs = append(s.externalIPs, a)
	}
	if svc.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	for _, ip := range ext.LoadBalancerIPs {
		a, _, err := parseIP(ip)
		if err != nil {
			return fmt.Errorf("status.loadBalancer.ingress: %w", err)
		}
		s.lbIPs = append(s.lbIPs, a)
	}
	// An IPv4-mapped range (::ffff:10.0.0.0/104, which API servers
	// before 1.36 accept) fails the whole Service: sending it as IPv6
	// would match no packet, and dropping it could leave a family's
	// list empty, which allows every source.
	for _, raw := range ext.LoadBalancerSourceRanges {
		p, err := doormanv1.ParsePrefix(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("loadBalancerSourceRanges: %w", err)
		}
		s.sourceRanges = append(s.sourceRanges, p.Masked())
	}
	return nil
}

func (s *service) parseAffinity(svc *compact.Service) error {
	if !svc.AffinityClientIP {
		return nil
	}
	s.affinity = defaultAffinityTimeout
	if timeout := svc.Extra().AffinityTimeout; timeout != nil {
		t := *timeout
		if t < 1 || t > 86400 {
			return fmt.Errorf("sessionAffinityConfig: timeoutSeconds %d out of range", t)
		}
		s.affinity = uint32(t)
	}
	return nil
}

// parseTrafficPolicies reads the external and internal traffic policies
// and the healthCheckNodePort (only under external policy Local).
func (s *service) parseTrafficPolicies(svc *compact.Service, withNodePorts bool) error {
	externallyReachable := withNodePorts || len(s.externalIPs) > 0 || len(s.lbIPs) > 0
	s.externallyReachable = externallyReachable
	s.externalLocal = externallyReachable && svc.ExternalPolicyLocal
	s.internalLocal = svc.InternalPolicyLocal
	if hc := svc.Extra().HealthCheckNodePort; s.externalLocal && hc != 0 {
		if hc < 0 || hc > 65535 {
			return fmt.Errorf("healthCheckNodePort %d out of range", hc)
		}
		s.healthCheckPort = uint32(hc)
	}
	return nil
}

// parseIP reads an address as agents accept it (doormanv1.ParseAddr: no
// zone, no IPv4-mapped IPv6 form), and not unspecified.
func parseIP(raw string) (netip.Addr, doormanv1.IPFamily, error) {
	a, err := doormanv1.ParseAddr(strings.TrimSpace(raw))
	if err != nil {
		return netip.Addr{}, 0, err
	}
	if a.IsUnspecified() {
		return netip.Addr{}, 0, fmt.Errorf("address %q is unspecified", raw)
	}
	return a, doormanv1.FamilyOf(a), nil
}

func familyOf(a netip.Addr) doormanv1.IPFamily { return doormanv1.FamilyOf(a) }

func parseProtocol(p corev1.Protocol) (doormanv1.Protocol, error) {
	switch p {
	case corev1.ProtocolTCP:
		return doormanv1.Protocol_PROTOCOL_TCP, nil
	case corev1.ProtocolUDP:
		return doormanv1.Protocol_PROTOCOL_UDP, nil
	case corev1.ProtocolSCTP:
		return doormanv1.Protocol_PROTOCOL_SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q", p)
}

// endpoint is one address of an EndpointSlice with what choosing it needs.
type endpoint struct {
	addr        netip.Addr
	node        string
	ready       bool
	serving     bool
	terminating bool
	forZones    []string
	forNodes    []string
}

type slicePort struct {
	name     string
	protocol corev1.Protocol
	port     uint32
}

type parsedSlice struct {
	family    doormanv1.IPFamily
	ports     []slicePort
	endpoints []endpoint
}

// parseSlice validates an EndpointSlice; it returns nil for slices doorman
// does not use (FQDN addresses).
func parseSlice(s *compact.Slice) (*parsedSlice, error) {
	ps := &parsedSlice{}
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		ps.family = doormanv1.IPFamily_IP_FAMILY_IPV4
	case discoveryv1.AddressTypeIPv6:
		ps.family = doormanv1.IPFamily_IP_FAMILY_IPV6
	default:
		return nil, nil
	}
	for _, p := range s.Ports {
		sp := slicePort{name: p.Name, protocol: p.Protocol}
		if _, err := parseProtocol(sp.protocol); err != nil {
			return nil, fmt.Errorf("port %q: %w", sp.name, err)
		}
		if p.Port < 1 || p.Port > 65535 {
			return nil, fmt.Errorf("port %q: port %d out of range", sp.name, p.Port)
		}
		sp.port = uint32(p.Port)
		ps.ports = append(ps.ports, sp)
	}
	for i, e := range s.Endpoints {
		if e.NoAddress {
			return nil, fmt.Errorf("endpoint %d: no address", i)
		}
		a, fam, err := parseIP(e.Address)
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		if fam != ps.family {
			return nil, fmt.Errorf("endpoint %d: address %s is not of the slice's type %s", i, a, s.AddressType)
		}
		ep := endpoint{addr: a, node: e.Node, ready: e.Ready, serving: e.Serving, terminating: e.Terminating}
		if e.Hints != nil {
			ep.forZones, ep.forNodes = e.Hints.ForZones, e.Hints.ForNodes
		}
		ps.endpoints = append(ps.endpoints, ep)
	}
	return ps, nil
}

// candidate is an endpoint resolved for one Service port.
type candidate struct {
	endpoint
	port uint32
}

func (c candidate) proto(terminating bool) *doormanv1.Endpoint {
	return &doormanv1.Endpoint{Ip: c.addr.String(), Port: c.port, Terminating: terminating}
}

// value computes one key's Value: the Service port in one family.
func (s *service) value(fam family, p port, from []*parsedSlice) Value {
	cands := candidates(fam, p, from)
	if s.internalLocal || s.externalLocal {
		return s.localValue(fam, p, cands)
	}
	mk := func(eps, local []*doormanv1.Endpoint) *doormanv1.ServicePort {
		return s.servicePort(fam, p, eps, local, nil)
	}
	v := Value{Default: mk(choose(cands, everyCandidate), nil)}
	v.ByNode, v.ByZone = topology(cands, mk)
	return v
}

// everyCandidate is the choose filter that keeps every candidate.
func everyCandidate(candidate) bool { return true }

// candidates returns the endpoints of the slices of fam for port p, sorted
// by address and port, each listed once.
func candidates(fam family, p port, from []*parsedSlice) []candidate {
	var cands []candidate
	for _, ps := range from {
		if ps.family != fam.family {
			continue
		}
		num, ok := ps.portNumber(p)
		if !ok {
			continue
		}
		for _, e := range ps.endpoints {
			cands = append(cands, candidate{endpoint: e, port: num})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.port, b.port); c != 0 {
			return c
		}
		// Among duplicates (an endpoint listed by two slices) the ready
		// one sorts first and is kept.
		return boolOrder(b.ready, a.ready)
	})
	return slices.CompactFunc(cands, func(a, b candidate) bool { return a.addr == b.addr && a.port == b.port })
}

// portNumber returns the number of the slice's own port matching p's name
// and protocol. The number comes from each slice, so Pods behind a named
// targetPort may differ.
func (ps *parsedSlice) portNumber(p port) (uint32, bool) {
	for _, sp := range ps.ports {
		if sp.name == p.name && sp.protocol == p.protocol {
			return sp.port, true
		}
	}
	return 0, false
}

// localValue computes the Value of a Service with a Local traffic policy:
// a default with no local endpoints, and one entry per node that has some.
func (s *service) localValue(fam family, p port, cands []candidate) Value {
	everywhere := choose(cands, everyCandidate)
	pick := func(local []*doormanv1.Endpoint) *doormanv1.ServicePort {
		eps, ext, cluster := everywhere, []*doormanv1.Endpoint(nil), []*doormanv1.Endpoint(nil)
		if s.internalLocal {
			eps = local
			// External traffic (and Pod- or node-sourced traffic to
			// external addresses) still needs the cluster-wide set.
			if s.externallyReachable {
				cluster = everywhere
			}
		}
		if s.externalLocal {
			ext = local
		}
		return s.servicePort(fam, p, eps, ext, cluster)
	}
	v := Value{Default: pick(nil)}
	for _, n := range nodesOf(cands) {
		local := choose(cands, func(c candidate) bool { return c.node == n })
		if len(local) == 0 {
			continue
		}
		if v.ByNode == nil {
			v.ByNode = map[string]*doormanv1.ServicePort{}
		}
		v.ByNode[n] = pick(local)
	}
	return v
}

// byNodeValues computes the values of a port with a Local traffic policy
// sent by node: the port without endpoints first, then one shard per node
// (or none, "") with endpoints that are ready or serving and terminating,
// in the order of the candidates.
func (s *service) byNodeValues(fam family, p port, from []*parsedSlice) []Value {
	cands := candidates(fam, p, from)
	port := s.servicePort(fam, p, nil, nil, nil)
	port.EndpointsByNode = true
	port.AssembleClusterEndpoints = s.internalLocal && s.externallyReachable
	// Every slice's change would change the port and resend it to every
	// node: its trigger time travels beside the entries.
	port.TriggerTimeUnixNano = 0
	out := []Value{{Default: port, Trigger: s.triggerTime}}
	byNode := map[string][]*doormanv1.Endpoint{}
	var nodes []string
	for _, c := range cands {
		if usable := c.ready || c.serving && c.terminating; !usable {
			continue
		}
		if _, ok := byNode[c.node]; !ok {
			nodes = append(nodes, c.node)
		}
		byNode[c.node] = append(byNode[c.node], c.proto(!c.ready))
	}
	for _, n := range nodes {
		out = append(out, Value{Default: doormanv1.NewShard(port, n, byNode[n]), Trigger: s.triggerTime})
	}
	return out
}

// nodesOf returns the nodes the candidates name, each once.
func nodesOf(cands []candidate) []string {
	seen := map[string]bool{}
	var nodes []string
	for _, c := range cands {
		if c.node != "" && !seen[c.node] {
			seen[c.node] = true
			nodes = append(nodes, c.node)
		}
	}
	return nodes
}

// choose returns the ready endpoints among those in, or when there is none
// the serving and terminating ones (marked terminating).
func choose(cands []candidate, in func(candidate) bool) []*doormanv1.Endpoint {
	var out []*doormanv1.Endpoint
	for _, c := range cands {
		if c.ready && in(c) {
			out = append(out, c.proto(false))
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, c := range cands {
		if c.serving && c.terminating && in(c) {
			out = append(out, c.proto(true))
		}
	}
	return out
}

// topology returns the overrides topology hints ask for: by node when every
// ready endpoint has node hints, by zone when every ready endpoint has zone
// hints. A node or zone no endpoint is hinted for keeps the Default (all).
func topology(cands []candidate, mk func(eps, local []*doormanv1.Endpoint) *doormanv1.ServicePort) (byNode, byZone map[string]*doormanv1.ServicePort) {
	var ready []candidate
	allNodes, allZones := true, true
	for _, c := range cands {
		if !c.ready {
			continue
		}
		ready = append(ready, c)
		allNodes = allNodes && len(c.forNodes) > 0
		allZones = allZones && len(c.forZones) > 0
	}
	if len(ready) == 0 {
		return nil, nil
	}
	group := func(hints func(candidate) []string) map[string]*doormanv1.ServicePort {
		eps := map[string][]*doormanv1.Endpoint{}
		for _, c := range ready {
			for _, h := range hints(c) {
				eps[h] = append(eps[h], c.proto(false))
			}
		}
		out := make(map[string]*doormanv1.ServicePort, len(eps))
		for h, l := range eps {
			out[h] = mk(l, nil)
		}
		return out
	}
	if allNodes {
		byNode = group(func(c candidate) []string { return c.forNodes })
	}
	if allZones {
		byZone = group(func(c candidate) []string { return c.forZones })
	}
	return byNode, byZone
}

func boolOrder(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func (s *service) servicePort(fam family, p port, eps, local, cluster []*doormanv1.Endpoint) *doormanv1.ServicePort {
	return &doormanv1.ServicePort{
		Namespace:                s.namespace,
		Name:                     s.name,
		PortName:                 p.name,
		Protocol:                 p.proto,
		Family:                   fam.family,
		ClusterIp:                fam.clusterIP.String(),
		Port:                     p.port,
		NodePort:                 p.nodePort,
		ExternalIps:              addrsOf(s.externalIPs, fam.family),
		LoadBalancerIps:          addrsOf(s.lbIPs, fam.family),
		LoadBalancerSourceRanges: prefixesOf(s.sourceRanges, fam.family),
		AffinityTimeoutSeconds:   s.affinity,
		ExternalPolicyLocal:      s.externalLocal,
		InternalPolicyLocal:      s.internalLocal,
		HealthCheckNodePort:      s.healthCheckPort,
		Endpoints:                eps,
		LocalEndpoints:           local,
		ClusterEndpoints:         cluster,
		TriggerTimeUnixNano:      s.triggerTime,
	}
}

// addrsOf returns the addresses of one family, sorted and without
// duplicates, so that equal sets encode equally.
func addrsOf(in []netip.Addr, fam doormanv1.IPFamily) []string {
	var sel []netip.Addr
	for _, a := range in {
		if familyOf(a) == fam {
			sel = append(sel, a)
		}
	}
	slices.SortFunc(sel, netip.Addr.Compare)
	sel = slices.Compact(sel)
	var out []string
	for _, a := range sel {
		out = append(out, a.String())
	}
	return out
}

func prefixesOf(in []netip.Prefix, fam doormanv1.IPFamily) []string {
	var sel []netip.Prefix
	for _, p := range in {
		if familyOf(p.Addr()) == fam {
			sel = append(sel, p)
		}
	}
	slices.SortFunc(sel, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	sel = slices.Compact(sel)
	var out []string
	for _, p := range sel {
		out = append(out, p.String())
	}
	return out
}
