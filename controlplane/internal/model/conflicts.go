package model

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// A Frontend is what a node's dispatch answers for: an address . protocol
// . port. ClusterIPs, externalIPs and LoadBalancer IPs share one address
// space, so two Services may claim one frontend.
type Frontend struct {
	Addr     netip.Addr
	Protocol doormanv1.Protocol
	Port     uint32
}

// String prints the frontend as "192.0.2.1:80/tcp" or "[fd00::1]:53/udp".
func (f Frontend) String() string {
	return netip.AddrPortFrom(f.Addr, uint16(f.Port)).String() + "/" + doormanv1.ProtocolName(f.Protocol)
}

// ClaimKind is what a Service claims a frontend as.
type ClaimKind uint8

// Claim kinds.
const (
	ClaimClusterIP ClaimKind = iota + 1
	ClaimExternalIP
	ClaimLoadBalancerIP
)

func (k ClaimKind) String() string {
	switch k {
	case ClaimClusterIP:
		return "ClusterIP"
	case ClaimExternalIP:
		return "externalIP"
	case ClaimLoadBalancerIP:
		return "LoadBalancer IP"
	}
	return "claim(" + strconv.Itoa(int(k)) + ")"
}

// Conflict is a frontend a Service claims and another Service owns: the
// Service's entries are sent without that address.
type Conflict struct {
	Frontend   Frontend
	Claim      ClaimKind // what the Service claims the frontend as
	Owner      string    // the owning Service, "<namespace>/<name>"
	OwnerClaim ClaimKind // what the owner claims it as
}

// String prints the conflict: "externalIP 192.0.2.1:80/tcp is the
// externalIP of ns/old".
func (c Conflict) String() string {
	return c.Claim.String() + " " + c.Frontend.String() + " is the " + c.OwnerClaim.String() + " of " + c.Owner
}

// claimant is one Service's claim on a frontend, with what ranks it.
type claimant struct {
	service string
	kind    ClaimKind
	age     age
}

// age is what ranks two Services' claims of one kind: the older Service
// first.
type age struct {
	created int64 // creationTimestamp, Unix seconds
	uid     string
}

func ageOf(svc *compact.Service) age {
	return age{created: svc.Created, uid: string(svc.UID)}
}

// compare orders claimants, owner first: a ClusterIP claim before an
// externalIP or LoadBalancer IP claim (the API server allocates
// ClusterIPs and keeps them unique; the others are whatever a Service's
// author or a load balancer wrote, so they never displace one); then the
// older Service (creationTimestamp, then UID), which no name can change;
// then the name, so that every replica agrees even on objects without
// either.
func (c claimant) compare(o claimant) int {
	if r, s := c.kind == ClaimClusterIP, o.kind == ClaimClusterIP; r != s {
		if r {
			return -1
		}
		return 1
	}
	switch {
	case c.age.created != o.age.created:
		return cmp.Compare(c.age.created, o.age.created)
	case c.age.uid != o.age.uid:
		return cmp.Compare(c.age.uid, o.age.uid)
	}
	return cmp.Compare(c.service, o.service)
}

// claims is what one Service claims: its frontends and its age.
type claims struct {
	age age
	// kinds, sorted by frontend: a map each would cost ten times the
	// memory of the one or two claims most Services make.
	kinds []frontendClaim
}

type frontendClaim struct {
	frontend Frontend
	kind     ClaimKind
}

// claimsOf is kinds as a list sorted by frontend.
func claimsOf(kinds map[Frontend]ClaimKind) []frontendClaim {
	out := make([]frontendClaim, 0, len(kinds))
	for f, k := range kinds {
		out = append(out, frontendClaim{frontend: f, kind: k})
	}
	slices.SortFunc(out, func(a, b frontendClaim) int { return compareFrontends(a.frontend, b.frontend) })
	return out
}

// kind is what c claims f as; 0 when it does not claim it.
func (c claims) kind(f Frontend) ClaimKind {
	i, found := slices.BinarySearchFunc(c.kinds, f, func(fc frontendClaim, f Frontend) int { return compareFrontends(fc.frontend, f) })
	if !found {
		return 0
	}
	return c.kinds[i].kind
}

// frontends indexes every Service's claims by frontend, so that a change
// costs what the changed Service claims (and the few claimants of those
// frontends), never a scan of all Services.
type frontends struct {
	// claimants of each frontend, owner first.
	claimants map[Frontend][]claimant
	byService map[string]claims
}

func newFrontends() *frontends { return newFrontendsFor(0) }

// newFrontendsFor returns frontends with room for the claims of services
// Services of one frontend each, the usual Service's, without growing.
func newFrontendsFor(services int) *frontends {
	return &frontends{claimants: make(map[Frontend][]claimant, services), byService: make(map[string]claims, services)}
}

// owner returns the Service owning a frontend, and what it claims it as.
func (fs *frontends) owner(f Frontend) (claimant, bool) {
	list := fs.claimants[f]
	if len(list) == 0 {
		return claimant{}, false
	}
	return list[0], true
}

// set replaces a Service's claims (none: it claims nothing) and returns
// the other Services whose frontends changed hands: each gained or lost a
// frontend, or lost it to another owner.
func (fs *frontends) set(id string, a age, kinds map[Frontend]ClaimKind) []string {
	old := fs.byService[id]
	affected := map[string]bool{}
	for _, c := range old.kinds {
		if old.age != a || kinds[c.frontend] != c.kind {
			fs.remove(id, c.frontend, affected)
		}
	}
	for f, k := range kinds {
		if old.age != a || old.kind(f) != k {
			fs.insert(claimant{service: id, kind: k, age: a}, f, affected)
		}
	}
	if len(kinds) == 0 {
		delete(fs.byService, id)
	} else {
		fs.byService[id] = claims{age: a, kinds: claimsOf(kinds)}
	}
	delete(affected, id)
	out := make([]string, 0, len(affected))
	for s := range affected {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func (fs *frontends) insert(c claimant, f Frontend, affected map[string]bool) {
	before, _ := fs.owner(f)
	list := fs.claimants[f]
	i, _ := slices.BinarySearchFunc(list, c, claimant.compare)
	list = slices.Insert(list, i, c)
	fs.claimants[f] = list
	if list[0].service != before.service {
		markAll(list, affected)
	}
}

func (fs *frontends) remove(id string, f Frontend, affected map[string]bool) {
	list := fs.claimants[f]
	wasOwner := len(list) > 0 && list[0].service == id
	list = slices.DeleteFunc(list, func(c claimant) bool { return c.service == id })
	if len(list) == 0 {
		delete(fs.claimants, f)
		return
	}
	fs.claimants[f] = list
	if wasOwner {
		markAll(list, affected)
	}
}

func markAll(list []claimant, affected map[string]bool) {
	for _, c := range list {
		affected[c.service] = true
	}
}

// frontendsOf returns what a Service's values claim: each key's ClusterIP,
// externalIPs and LoadBalancer IPs at its protocol and port. An address
// listed twice in one key is one claim, as agents render it: a ClusterIP
// claim if it is the ClusterIP, else a LoadBalancer IP claim if it is one.
// Values differ between nodes only in endpoints, so Default speaks for
// every node.
func frontendsOf(values map[string]Value) map[Frontend]ClaimKind {
	if len(values) == 0 {
		return nil
	}
	out := map[Frontend]ClaimKind{}
	for _, v := range values {
		sp := v.Default
		claim := func(raw string, k ClaimKind) {
			a, err := netip.ParseAddr(raw)
			if err != nil {
				return // validValue lets no such value through
			}
			f := Frontend{Addr: a, Protocol: sp.GetProtocol(), Port: sp.GetPort()}
			if _, ok := out[f]; !ok {
				out[f] = k
			}
		}
		if ip := sp.GetClusterIp(); ip != "" {
			claim(ip, ClaimClusterIP)
		}
		for _, ip := range sp.GetLoadBalancerIps() {
			claim(ip, ClaimLoadBalancerIP)
		}
		for _, ip := range sp.GetExternalIps() {
			claim(ip, ClaimExternalIP)
		}
	}
	return out
}

// withoutLost returns the values with every address whose frontend
// another Service owns left out, and those conflicts. values is not
// modified: a value that loses an address is a copy.
func (fs *frontends) withoutLost(id string, values map[string]Value) (map[string]Value, []Conflict) {
	var conflicts []Conflict
	var out map[string]Value
	for key, v := range values {
		sp := v.Default
		var lost []netip.Addr
		for _, raw := range addressesOf(sp) {
			a, err := netip.ParseAddr(raw)
			if err != nil {
				continue
			}
			f := Frontend{Addr: a, Protocol: sp.GetProtocol(), Port: sp.GetPort()}
			owner, ok := fs.owner(f)
			if !ok || owner.service == id || slices.Contains(lost, a) {
				continue
			}
			lost = append(lost, a)
			conflicts = append(conflicts, Conflict{Frontend: f, Claim: fs.byService[id].kind(f), Owner: owner.service, OwnerClaim: owner.kind})
		}
		if len(lost) == 0 {
			continue
		}
		if out == nil {
			out = make(map[string]Value, len(values))
			for k, v := range values {
				out[k] = v
			}
		}
		out[key] = v.without(lost)
	}
	if out == nil {
		out = values
	}
	slices.SortFunc(conflicts, compareConflicts)
	return out, conflicts
}

func addressesOf(sp *doormanv1.ServicePort) []string {
	out := make([]string, 0, 1+len(sp.GetExternalIps())+len(sp.GetLoadBalancerIps()))
	if ip := sp.GetClusterIp(); ip != "" {
		out = append(out, ip)
	}
	out = append(out, sp.GetExternalIps()...)
	return append(out, sp.GetLoadBalancerIps()...)
}

func compareConflicts(a, b Conflict) int { return compareFrontends(a.Frontend, b.Frontend) }

func compareFrontends(a, b Frontend) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Protocol, b.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

// without returns the value with the addresses left out of every node's
// ServicePort: as ClusterIP, externalIP and LoadBalancer IP alike.
func (v Value) without(lost []netip.Addr) Value {
	strip := func(sp *doormanv1.ServicePort) *doormanv1.ServicePort {
		cp := proto.CloneOf(sp)
		keep := func(raw string) bool {
			a, err := netip.ParseAddr(raw)
			return err != nil || !slices.Contains(lost, a)
		}
		if !keep(cp.ClusterIp) {
			cp.ClusterIp = ""
		}
		cp.ExternalIps = slices.DeleteFunc(cp.ExternalIps, func(s string) bool { return !keep(s) })
		cp.LoadBalancerIps = slices.DeleteFunc(cp.LoadBalancerIps, func(s string) bool { return !keep(s) })
		if len(cp.ExternalIps) == 0 {
			cp.ExternalIps = nil
		}
		if len(cp.LoadBalancerIps) == 0 {
			cp.LoadBalancerIps = nil
		}
		return cp
	}
	out := Value{Default: strip(v.Default)}
	if v.ByNode != nil {
		out.ByNode = make(map[string]*doormanv1.ServicePort, len(v.ByNode))
		for n, sp := range v.ByNode {
			out.ByNode[n] = strip(sp)
		}
	}
	if v.ByZone != nil {
		out.ByZone = make(map[string]*doormanv1.ServicePort, len(v.ByZone))
		for z, sp := range v.ByZone {
			out.ByZone[z] = strip(sp)
		}
	}
	return out
}
