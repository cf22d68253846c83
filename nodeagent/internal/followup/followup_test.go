package followup

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func svc(name string, hc uint32, eps ...string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: name, Protocol: doormanv1.Protocol_PROTOCOL_UDP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0." + strconv.Itoa(int(name[0])), Port: 53, HealthCheckNodePort: hc}
	for _, ip := range eps {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 53})
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func viewOf(es ...*doormanv1.Entry) map[string]*doormanv1.Entry {
	m := map[string]*doormanv1.Entry{}
	for _, e := range es {
		m[e.GetKey()] = e
	}
	return m
}

type recorder struct {
	cleaned  [][]dataplane.Change
	health   [][]string // keys given to each Update
	cleanErr error
	hcErr    error
	failed   []string
}

func (r *recorder) Clean(c []dataplane.Change) error {
	r.cleaned = append(r.cleaned, c)
	return r.cleanErr
}

func (r *recorder) Update(entries map[string]*doormanv1.Entry) error {
	r.health = append(r.health, slices.Sorted(maps.Keys(entries)))
	return r.hcErr
}
func (r *recorder) ConntrackCleanFailed() { r.failed = append(r.failed, "conntrack") }
func (r *recorder) HealthCheckFailed()    { r.failed = append(r.failed, "health") }

// TestKernel: the first Sync records the view and starts the health checks
// without cleaning; later commits clean exactly their changes; health
// checks are updated only when a change carries a health check node port;
// failed transactions have no follow-up; follow-up errors are counted and
// never returned.
func TestKernel(t *testing.T) {
	a, b, hc := svc("a", 0, "10.0.0.1"), svc("b", 0, "10.0.0.2"), svc("hc", 32000, "10.0.0.3")
	a2 := svc("a", 0, "10.0.0.9")
	inner := dataplane.NewFake(dataplane.Options{})
	r := &recorder{}
	k := Wrap(inner, Config{Cleaner: r, Health: r, Observer: r})

	if _, err := k.Sync(viewOf(a, hc)); err != nil {
		t.Fatal(err)
	}
	if len(r.cleaned) != 0 {
		t.Errorf("first Sync cleaned %v, want nothing", r.cleaned)
	}
	wantHealth := [][]string{{hc.GetKey()}}
	if diff := cmp.Diff(wantHealth, r.health); diff != "" {
		t.Errorf("health after first Sync (-want +got):\n%s", diff)
	}

	// An Apply without health check ports: cleaned, health untouched.
	ch := []dataplane.Change{{Key: a.GetKey(), Old: a, New: a2}}
	if _, err := k.Apply(ch); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]dataplane.Change{ch}, r.cleaned, protocmp.Transform()); diff != "" {
		t.Errorf("cleaned (-want +got):\n%s", diff)
	}
	if len(r.health) != 1 {
		t.Errorf("health updated %d times, want 1", len(r.health))
	}

	// The health-checked Service leaves: health updated without it.
	if _, err := k.Apply([]dataplane.Change{{Key: hc.GetKey(), Old: hc}}); err != nil {
		t.Fatal(err)
	}
	wantHealth = append(wantHealth, nil)
	if diff := cmp.Diff(wantHealth, r.health); diff != "" {
		t.Errorf("health after removal (-want +got):\n%s", diff)
	}

	// A failed Apply: no follow-up, the error is the kernel's.
	inner.FailApply(errors.New("boom"))
	before := len(r.cleaned)
	if _, err := k.Apply([]dataplane.Change{{Key: b.GetKey(), New: b}}); err == nil {
		t.Fatal("Apply: no error")
	}
	if len(r.cleaned) != before {
		t.Errorf("failed Apply was cleaned")
	}

	// The Sync that follows it cleans what differs from the last commit
	// (b is new; a2 unchanged), and follow-up errors stay inside.
	r.cleanErr, r.hcErr = errors.New("no conntrack"), errors.New("port busy")
	if _, err := k.Sync(viewOf(a2, b)); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := []dataplane.Change{{Key: b.GetKey(), New: b}}
	if diff := cmp.Diff(want, r.cleaned[len(r.cleaned)-1], protocmp.Transform()); diff != "" {
		t.Errorf("cleaned by Sync (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"conntrack", "health"}, r.failed); diff != "" {
		t.Errorf("failures counted (-want +got):\n%s", diff)
	}

	// A partial Sync committed: followed up.
	inner.FailSyncs(&dataplane.InvalidEntriesError{Entries: map[string]error{"x": errors.New("bad")}}, 1)
	if _, err := k.Sync(viewOf(a2)); err == nil {
		t.Fatal("partial Sync: the error must be passed on")
	}
	want = []dataplane.Change{{Key: b.GetKey(), Old: b}}
	if diff := cmp.Diff(want, r.cleaned[len(r.cleaned)-1], protocmp.Transform()); diff != "" {
		t.Errorf("cleaned by partial Sync (-want +got):\n%s", diff)
	}
}

func TestChanges(t *testing.T) {
	a, b, c := svc("a", 0, "10.0.0.1"), svc("b", 0), svc("c", 0)
	a2 := svc("a", 0, "10.0.0.2")
	aSame := svc("a", 0, "10.0.0.1") // equal value, another message
	tests := []struct {
		name     string
		old, new map[string]*doormanv1.Entry
		want     []dataplane.Change
	}{
		{"nothing", viewOf(a, b), viewOf(a, b), nil},
		{"equal values", viewOf(a), viewOf(aSame), nil},
		{"all kinds", viewOf(a, b), viewOf(a2, c), []dataplane.Change{
			{Key: a.GetKey(), Old: a, New: a2},
			{Key: b.GetKey(), Old: b},
			{Key: c.GetKey(), New: c},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Changes(tc.old, tc.new), protocmp.Transform()); diff != "" {
				t.Errorf("Changes (-want +got):\n%s", diff)
			}
		})
	}
}
