package compact

import (
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Identity is what names an object and orders claims: its namespace, name,
// UID, resourceVersion and creation time.
type Identity struct {
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	Created         int64 // creationTimestamp, Unix seconds
}

func identityOf(m *metav1.ObjectMeta) Identity {
	return Identity{Namespace: intern(m.Namespace), Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Created: m.CreationTimestamp.Unix()}
}

// GetObjectMeta returns the identity as an ObjectMeta, for meta.Accessor
// (the informers' key function, Events' object references).
func (id *Identity) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: id.Namespace, Name: id.Name, UID: id.UID, ResourceVersion: id.ResourceVersion,
		CreationTimestamp: metav1.Unix(id.Created, 0)}
}

// GetResourceVersion returns the resourceVersion, as metav1.Object does.
func (id *Identity) GetResourceVersion() string { return id.ResourceVersion }

// GetObjectKind is part of runtime.Object: the compact forms carry no
// kind.
func (id *Identity) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// The labels the model reads.
const (
	// LabelServiceProxyName marks a Service another proxy owns.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// LabelHeadless marks a headless Service and its EndpointSlices.
	LabelHeadless = corev1.IsHeadlessService
	// LabelServiceName names the Service an EndpointSlice belongs to.
	LabelServiceName = discoveryv1.LabelServiceName
)

// Service is the compact form of a Service.
type Service struct {
	Identity
	Type corev1.ServiceType
	// OtherProxy: the label service.kubernetes.io/service-proxy-name is
	// set. HeadlessLabel: the label service.kubernetes.io/headless is
	// present. ClusterIPNone: spec.clusterIP is None.
	OtherProxy, HeadlessLabel, ClusterIPNone bool
	// AffinityClientIP: spec.sessionAffinity is ClientIP.
	AffinityClientIP bool
	// ExternalPolicyLocal, InternalPolicyLocal: the traffic policies are
	// Local.
	ExternalPolicyLocal, InternalPolicyLocal bool
	// ClusterIPs are spec.clusterIPs, or spec.clusterIP alone when that
	// list is empty (none when both are).
	ClusterIPs []string
	Ports      []ServicePort
	// External holds the fields most Services leave empty; nil when all
	// are.
	External *ServiceExternal
}

// ServicePort is a Service port as the model reads it.
type ServicePort struct {
	Name     string
	Protocol corev1.Protocol // "" as written: the model reads it as TCP
	Port     int32
	NodePort int32
}

// ServiceExternal are the fields of a Service most leave empty.
type ServiceExternal struct {
	ExternalIPs              []string
	LoadBalancerSourceRanges []string
	// LoadBalancerIPs are status.loadBalancer.ingress IPs, but those
	// empty or of IP mode Proxy.
	LoadBalancerIPs     []string
	AffinityTimeout     *int32
	HealthCheckNodePort int32
}

// FromService returns what the model reads of svc.
func FromService(svc *corev1.Service) *Service {
	s := &Service{Identity: identityOf(&svc.ObjectMeta), Type: internServiceType(svc.Spec.Type)}
	sp := &svc.Spec
	setFlags(s, svc)
	s.ClusterIPs = sp.ClusterIPs
	if len(s.ClusterIPs) == 0 && sp.ClusterIP != "" {
		s.ClusterIPs = []string{sp.ClusterIP}
	}
	if len(sp.Ports) > 0 {
		s.Ports = make([]ServicePort, len(sp.Ports))
		for i, p := range sp.Ports {
			s.Ports[i] = ServicePort{Name: intern(p.Name), Protocol: internProtocol(p.Protocol), Port: p.Port, NodePort: p.NodePort}
		}
	}
	ext := ServiceExternal{ExternalIPs: sp.ExternalIPs, HealthCheckNodePort: sp.HealthCheckNodePort}
	if sp.Type == corev1.ServiceTypeLoadBalancer {
		ext.LoadBalancerSourceRanges = sp.LoadBalancerSourceRanges
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" && (ing.IPMode == nil || *ing.IPMode != corev1.LoadBalancerIPModeProxy) {
				ext.LoadBalancerIPs = append(ext.LoadBalancerIPs, ing.IP)
			}
		}
	}
	if c := sp.SessionAffinityConfig; c != nil && c.ClientIP != nil {
		ext.AffinityTimeout = c.ClientIP.TimeoutSeconds
	}
	if ext.ExternalIPs != nil || ext.LoadBalancerSourceRanges != nil || ext.LoadBalancerIPs != nil ||
		ext.AffinityTimeout != nil || ext.HealthCheckNodePort != 0 {
		s.External = &ext
	}
	return s
}

// setFlags sets the yes-or-no fields of s from svc.
func setFlags(s *Service, svc *corev1.Service) {
	_, s.HeadlessLabel = svc.Labels[LabelHeadless]
	s.OtherProxy = svc.Labels[LabelServiceProxyName] != ""
	s.ClusterIPNone = svc.Spec.ClusterIP == corev1.ClusterIPNone
	s.AffinityClientIP = svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP
	s.ExternalPolicyLocal = svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	s.InternalPolicyLocal = svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
}

// Extra returns s.External, or an empty one; callers must not change it.
func (s *Service) Extra() *ServiceExternal {
	if s.External == nil {
		return &noExternal
	}
	return s.External
}

// noExternal is the Extra of the Services without External fields.
var noExternal ServiceExternal

// DeepCopyObject is part of runtime.Object.
func (s *Service) DeepCopyObject() runtime.Object {
	c := *s
	c.ClusterIPs = append([]string(nil), s.ClusterIPs...)
	c.Ports = append([]ServicePort(nil), s.Ports...)
	if s.External != nil {
		e := *s.External
		e.ExternalIPs = append([]string(nil), e.ExternalIPs...)
		e.LoadBalancerSourceRanges = append([]string(nil), e.LoadBalancerSourceRanges...)
		e.LoadBalancerIPs = append([]string(nil), e.LoadBalancerIPs...)
		if e.AffinityTimeout != nil {
			t := *e.AffinityTimeout
			e.AffinityTimeout = &t
		}
		c.External = &e
	}
	return &c
}

// Slice is the compact form of an EndpointSlice.
type Slice struct {
	Identity
	// Service is the label kubernetes.io/service-name, "" when the slice
	// is headless (label service.kubernetes.io/headless) or has none.
	Service     string
	AddressType discoveryv1.AddressType
	// TriggerTime is the annotation endpoints.kubernetes.io/last-change-trigger-time,
	// Unix nanoseconds; 0 when absent or not RFC 3339.
	TriggerTime int64
	// Ports are those with a number (the model skips the others).
	Ports     []SlicePort
	Endpoints []Endpoint
}

// SlicePort is an EndpointSlice port with a number.
type SlicePort struct {
	Name     string
	Protocol corev1.Protocol // TCP when the slice says none
	Port     int32
}

// Endpoint is what the model reads of an endpoint: its first address,
// conditions (an unset ready counting as ready, an unset serving as
// ready), node and hints.
type Endpoint struct {
	Address string // the first address; "" with NoAddress when none
	Node    string
	// NoAddress: the endpoint lists no address.
	NoAddress                   bool
	Ready, Serving, Terminating bool
	Hints                       *Hints
}

// Hints are the zones and nodes an endpoint is hinted for.
type Hints struct {
	ForZones, ForNodes []string
}

// FromSlice returns what the model reads of s.
func FromSlice(s *discoveryv1.EndpointSlice) *Slice {
	c := &Slice{Identity: identityOf(&s.ObjectMeta), AddressType: internAddressType(s.AddressType)}
	if _, headless := s.Labels[LabelHeadless]; !headless {
		c.Service = s.Labels[LabelServiceName]
	}
	if raw, ok := s.Annotations[corev1.EndpointsLastChangeTriggerTime]; ok {
		if t, err := time.Parse(time.RFC3339Nano, raw); err == nil {
			c.TriggerTime = t.UnixNano()
		}
	}
	for _, p := range s.Ports {
		if p.Port == nil {
			continue
		}
		sp := SlicePort{Protocol: corev1.ProtocolTCP, Port: *p.Port}
		if p.Name != nil {
			sp.Name = intern(*p.Name)
		}
		if p.Protocol != nil {
			sp.Protocol = internProtocol(*p.Protocol)
		}
		c.Ports = append(c.Ports, sp)
	}
	if len(s.Endpoints) > 0 {
		c.Endpoints = make([]Endpoint, len(s.Endpoints))
		for i := range s.Endpoints {
			c.Endpoints[i] = compactEndpoint(&s.Endpoints[i])
		}
	}
	return c
}

func compactEndpoint(e *discoveryv1.Endpoint) Endpoint {
	var ep Endpoint
	if len(e.Addresses) == 0 {
		ep.NoAddress = true
	} else {
		ep.Address = e.Addresses[0]
	}
	ep.Ready = e.Conditions.Ready == nil || *e.Conditions.Ready
	ep.Serving = ep.Ready
	if e.Conditions.Serving != nil {
		ep.Serving = *e.Conditions.Serving
	}
	ep.Terminating = e.Conditions.Terminating != nil && *e.Conditions.Terminating
	if e.NodeName != nil {
		ep.Node = intern(*e.NodeName)
	}
	if h := e.Hints; h != nil && (len(h.ForZones) > 0 || len(h.ForNodes) > 0) {
		ep.Hints = &Hints{}
		for _, z := range h.ForZones {
			ep.Hints.ForZones = append(ep.Hints.ForZones, intern(z.Name))
		}
		for _, n := range h.ForNodes {
			ep.Hints.ForNodes = append(ep.Hints.ForNodes, intern(n.Name))
		}
	}
	return ep
}

// DeepCopyObject is part of runtime.Object.
func (s *Slice) DeepCopyObject() runtime.Object {
	c := *s
	c.Ports = append([]SlicePort(nil), s.Ports...)
	c.Endpoints = append([]Endpoint(nil), s.Endpoints...)
	for i, e := range c.Endpoints {
		if e.Hints != nil {
			c.Endpoints[i].Hints = &Hints{
				ForZones: append([]string(nil), e.Hints.ForZones...),
				ForNodes: append([]string(nil), e.Hints.ForNodes...),
			}
		}
	}
	return &c
}

// intern returns s sharing its bytes with every equal string interned.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// internConst returns the constant among consts equal to v, or v: a
// decoded object's copy of a value every object repeats is then freed.
func internConst[T ~string](v T, consts ...T) T {
	for _, c := range consts {
		if v == c {
			return c
		}
	}
	return v
}

func internProtocol(p corev1.Protocol) corev1.Protocol {
	return internConst(p, corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
}

func internServiceType(t corev1.ServiceType) corev1.ServiceType {
	return internConst(t, corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)
}

func internAddressType(t discoveryv1.AddressType) discoveryv1.AddressType {
	return internConst(t, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)
}
