package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1 "k8s.io/api/networking/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// ServiceCIDRs indexes ServiceCIDR objects (networking.k8s.io/v1) and
// gives the union of their spec.cidrs: every node's Node entry carries it,
// and the agents drop traffic to an address in it that no Service holds.
// An object counts until it is gone, finalizer pending or not: addresses
// of a range being deleted may still be allocated. It is not safe for
// concurrent use.
type ServiceCIDRs struct {
	byName map[string][]netip.Prefix
	union  []string
}

// NewServiceCIDRs returns an empty index.
func NewServiceCIDRs() *ServiceCIDRs {
	return &ServiceCIDRs{byName: map[string][]netip.Prefix{}}
}

// Set adds or replaces a ServiceCIDR object and reports whether the union
// changed. A CIDR that does not parse, or an IPv4-mapped IPv6 prefix, is
// skipped (the object's other CIDRs still count); err names the object and
// each skipped CIDR.
func (s *ServiceCIDRs) Set(obj *networkingv1.ServiceCIDR) (changed bool, err error) {
	var prefixes []netip.Prefix
	var errs []error
	for _, c := range obj.Spec.CIDRs {
		p, err := parseServiceCIDR(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		prefixes = append(prefixes, p)
	}
	if len(errs) > 0 {
		err = fmt.Errorf("servicecidr %s: %w", obj.Name, errors.Join(errs...))
	}
	s.byName[obj.Name] = prefixes
	return s.recompute(), err
}

// Delete removes a ServiceCIDR object and reports whether the union
// changed.
func (s *ServiceCIDRs) Delete(name string) bool {
	if _, ok := s.byName[name]; !ok {
		return false
	}
	delete(s.byName, name)
	return s.recompute()
}

// List is the union of every object's CIDRs: canonical prefix text
// (masked), IPv4 before IPv6, each family sorted by address then prefix
// length, without duplicates; nil when there are none. Callers must not
// modify it.
func (s *ServiceCIDRs) List() []string { return s.union }

func (s *ServiceCIDRs) recompute() bool {
	var all []netip.Prefix
	for _, ps := range s.byName {
		all = append(all, ps...)
	}
	var union []string
	for _, fam := range []doormanv1.IPFamily{doormanv1.IPFamily_IP_FAMILY_IPV4, doormanv1.IPFamily_IP_FAMILY_IPV6} {
		union = append(union, prefixesOf(all, fam)...)
	}
	if slices.Equal(union, s.union) {
		return false
	}
	s.union = union
	return true
}

// parseServiceCIDR reads one entry of spec.cidrs as the agents accept it:
// a prefix of one family, no zone, not IPv4-mapped.
func parseServiceCIDR(raw string) (netip.Prefix, error) {
	p, err := doormanv1.ParsePrefix(strings.TrimSpace(raw))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr: %w", err)
	}
	return p.Masked(), nil
}

// NodeWithServiceCIDRs returns a copy of a Node entry that carries the
// cluster's Service CIDRs (nil stays nil).
func NodeWithServiceCIDRs(n *doormanv1.Node, cidrs []string) *doormanv1.Node {
	if n == nil {
		return nil
	}
	out := proto.CloneOf(n)
	out.ServiceCidrs = slices.Clone(cidrs)
	return out
}
