package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// This file is the model's reading of Services and EndpointSlices as it
// was before the compact forms, kept as the reference the compact forms
// are checked against (FuzzCompactForms): every function reads the
// decoded objects directly, and Ports through the compact forms must
// give what fullPorts gives.

// fullSkipped reports why a Service is not programmed at all, or "" when it is.
func fullSkipped(svc *corev1.Service) string {
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return "type ExternalName"
	case svc.Labels[LabelServiceProxyName] != "":
		return "label " + LabelServiceProxyName
	case hasLabel(svc.Labels, LabelHeadless):
		return "label " + LabelHeadless
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		return "headless"
	case svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0:
		return "no cluster IP"
	}
	return ""
}

// fullPorts computes the entries of one Service from its EndpointSlices: one key
// per Service port per IP family. A Service that is skipped (see Skipped)
// has none. An invalid Service yields no entries and an error naming it; an
// invalid EndpointSlice is left out (the others still count) and named in the
// returned error, next to entries that are valid. Every value returned
// passes doormanv1.ValidateServicePort, the check agents make: one that
// would not (a bug here, or input this parse lets through) is not sent;
// the Service then yields no entries and an error naming it and the reason.
func fullPorts(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) (map[string]Value, error) {
	if fullSkipped(svc) != "" {
		return nil, nil
	}
	id := svc.Namespace + "/" + svc.Name
	base, err := fullParseService(svc)
	if err != nil {
		return nil, &InvalidServiceError{Service: id, Err: err}
	}
	var errs []error
	var good []*parsedSlice
	for _, s := range endpointSlices {
		ps, err := fullParseSlice(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpointslice %s/%s of service %s: %w", s.Namespace, s.Name, id, err))
			continue
		}
		if ps != nil {
			good = append(good, ps)
		}
	}
	base.triggerTime = fullTriggerTime(endpointSlices)
	out := make(map[string]Value, len(base.families)*len(svc.Spec.Ports))
	for _, fam := range base.families {
		for _, port := range base.ports {
			v := base.value(fam, port, good)
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
	return out, errors.Join(errs...)
}

// fullTriggerTime is the newest last-change-trigger-time of the slices, in Unix
// nanoseconds (0 when none has one). An unparsable annotation is ignored: it
// only feeds a latency metric.
func fullTriggerTime(in []*discoveryv1.EndpointSlice) int64 {
	var newest int64
	for _, s := range in {
		raw, ok := s.Annotations[corev1.EndpointsLastChangeTriggerTime]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			continue
		}
		newest = max(newest, t.UnixNano())
	}
	return newest
}

func fullParseService(svc *corev1.Service) (*service, error) {
	s := &service{namespace: svc.Namespace, name: svc.Name}
	if err := s.fullParseClusterIPs(svc); err != nil {
		return nil, err
	}
	withNodePorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if err := s.fullParsePorts(svc.Spec.Ports, withNodePorts); err != nil {
		return nil, err
	}
	if err := s.fullParseExternalAddresses(svc); err != nil {
		return nil, err
	}
	if err := s.fullParseAffinity(svc); err != nil {
		return nil, err
	}
	if err := s.fullParseTrafficPolicies(svc, withNodePorts); err != nil {
		return nil, err
	}
	return s, nil
}

// fullParseClusterIPs reads the ClusterIPs, at most one per family.
func (s *service) fullParseClusterIPs(svc *corev1.Service) error {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, raw := range ips {
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

// fullParsePorts reads the ports, with their nodePorts when the Service has
// them; a Service needs one port at least.
func (s *service) fullParsePorts(ports []corev1.ServicePort, withNodePorts bool) error {
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

// fullParseExternalAddresses reads the externalIPs and, for a LoadBalancer,
// its ingress IPs and source ranges.
func (s *service) fullParseExternalAddresses(svc *corev1.Service) error {
	for _, raw := range svc.Spec.ExternalIPs {
		a, _, err := parseIP(raw)
		if err != nil {
			return fmt.Errorf("externalIPs: %w", err)
		}
		s.externalIPs = append(s.externalIPs, a)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" || (ing.IPMode != nil && *ing.IPMode == corev1.LoadBalancerIPModeProxy) {
			continue
		}
		a, _, err := parseIP(ing.IP)
		if err != nil {
			return fmt.Errorf("status.loadBalancer.ingress: %w", err)
		}
		s.lbIPs = append(s.lbIPs, a)
	}
	// An IPv4-mapped range (::ffff:10.0.0.0/104, which API servers
	// before 1.36 accept) fails the whole Service: sending it as IPv6
	// would match no packet, and dropping it could leave a family's
	// list empty, which allows every source.
	for _, raw := range svc.Spec.LoadBalancerSourceRanges {
		p, err := doormanv1.ParsePrefix(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("loadBalancerSourceRanges: %w", err)
		}
		s.sourceRanges = append(s.sourceRanges, p.Masked())
	}
	return nil
}

func (s *service) fullParseAffinity(svc *corev1.Service) error {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return nil
	}
	s.affinity = defaultAffinityTimeout
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		t := *c.ClientIP.TimeoutSeconds
		if t < 1 || t > 86400 {
			return fmt.Errorf("sessionAffinityConfig: timeoutSeconds %d out of range", t)
		}
		s.affinity = uint32(t)
	}
	return nil
}

// fullParseTrafficPolicies reads the external and internal traffic policies
// and the healthCheckNodePort (only under external policy Local).
func (s *service) fullParseTrafficPolicies(svc *corev1.Service, withNodePorts bool) error {
	externallyReachable := withNodePorts || len(s.externalIPs) > 0 || len(s.lbIPs) > 0
	s.externallyReachable = externallyReachable
	s.externalLocal = externallyReachable && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	s.internalLocal = svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	if s.externalLocal && svc.Spec.HealthCheckNodePort != 0 {
		if svc.Spec.HealthCheckNodePort < 0 || svc.Spec.HealthCheckNodePort > 65535 {
			return fmt.Errorf("healthCheckNodePort %d out of range", svc.Spec.HealthCheckNodePort)
		}
		s.healthCheckPort = uint32(svc.Spec.HealthCheckNodePort)
	}
	return nil
}

// fullParseSlice validates an EndpointSlice; it returns nil for slices doorman
// does not use (FQDN addresses).
func fullParseSlice(s *discoveryv1.EndpointSlice) (*parsedSlice, error) {
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
		if p.Port == nil {
			continue
		}
		sp := slicePort{protocol: corev1.ProtocolTCP}
		if p.Name != nil {
			sp.name = *p.Name
		}
		if p.Protocol != nil {
			sp.protocol = *p.Protocol
		}
		if _, err := parseProtocol(sp.protocol); err != nil {
			return nil, fmt.Errorf("port %q: %w", sp.name, err)
		}
		if *p.Port < 1 || *p.Port > 65535 {
			return nil, fmt.Errorf("port %q: port %d out of range", sp.name, *p.Port)
		}
		sp.port = uint32(*p.Port)
		ps.ports = append(ps.ports, sp)
	}
	for i, e := range s.Endpoints {
		if len(e.Addresses) == 0 {
			return nil, fmt.Errorf("endpoint %d: no address", i)
		}
		a, fam, err := parseIP(e.Addresses[0])
		if err != nil {
			return nil, fmt.Errorf("endpoint %d: %w", i, err)
		}
		if fam != ps.family {
			return nil, fmt.Errorf("endpoint %d: address %s is not of the slice's type %s", i, a, s.AddressType)
		}
		ep := endpoint{addr: a}
		ep.ready = e.Conditions.Ready == nil || *e.Conditions.Ready
		ep.serving = ep.ready
		if e.Conditions.Serving != nil {
			ep.serving = *e.Conditions.Serving
		}
		ep.terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
		if e.NodeName != nil {
			ep.node = *e.NodeName
		}
		if h := e.Hints; h != nil {
			for _, z := range h.ForZones {
				ep.forZones = append(ep.forZones, z.Name)
			}
			for _, n := range h.ForNodes {
				ep.forNodes = append(ep.forNodes, n.Name)
			}
		}
		ps.endpoints = append(ps.endpoints, ep)
	}
	return ps, nil
}
