package state

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// servicePort builds a valid IPv4 TCP entry for Service ns/name, port 80,
// with the given endpoints (ip:8080 each); mutate may edit the value before
// its key and digest are computed.
func servicePort(t testing.TB, ns, name string, mutate func(*doormanv1.ServicePort), endpoints ...string) *doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: ns, Name: name, PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV4,
		ClusterIp: "10.96.0.10", Port: 80,
	}
	for _, ip := range endpoints {
		sp.Endpoints = append(sp.Endpoints, &doormanv1.Endpoint{Ip: ip, Port: 8080})
	}
	if mutate != nil {
		mutate(sp)
	}
	return seal(t, &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}})
}

func nodeEntry(t testing.TB, name string, addrs ...string) *doormanv1.Entry {
	t.Helper()
	return seal(t, &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: name, NodeportAddresses: addrs}}})
}

// nodeWithServiceCIDRs is a Node entry carrying the given Service CIDRs.
func nodeWithServiceCIDRs(t testing.TB, cidrs ...string) *doormanv1.Entry {
	t.Helper()
	e := nodeEntry(t, "node-1", "192.168.0.1")
	e.GetNode().ServiceCidrs = cidrs
	return seal(t, e)
}

// seal sets the entry's digest from its value.
func seal(t testing.TB, e *doormanv1.Entry) *doormanv1.Entry {
	t.Helper()
	var m proto.Message
	switch v := e.GetValue().(type) {
	case *doormanv1.Entry_ServicePort:
		m = v.ServicePort
	case *doormanv1.Entry_Node:
		m = v.Node
	}
	d, err := doormanv1.ValueDigest(m)
	if err != nil {
		t.Fatal(err)
	}
	e.Digest = d
	return e
}

// digestOf is the view digest of a set of entries.
func digestOf(entries ...*doormanv1.Entry) uint64 {
	var d doormanv1.Digests
	for _, e := range entries {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return d.View()
}

// sameBucket returns n distinct Service names whose keys share one bucket.
func sameBucket(t testing.TB, n int) []*doormanv1.Entry {
	t.Helper()
	byBucket := map[uint32][]*doormanv1.Entry{}
	for i := 0; ; i++ {
		e := servicePort(t, "default", "svc"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26), nil, "10.244.0.1")
		b := doormanv1.Bucket(e.GetKey())
		byBucket[b] = append(byBucket[b], e)
		if len(byBucket[b]) == n {
			return byBucket[b]
		}
	}
}

type snapshot struct {
	Version uint64
	Digest  uint64
	Holding *doormanv1.Holding
	Entries []*doormanv1.Entry
}

func snap(v *View) snapshot {
	return snapshot{Version: v.Version(), Digest: v.Digest(), Holding: v.Holding(), Entries: v.Sorted()}
}

var cmpOpts = []cmp.Option{protocmp.Transform(), cmpopts.SortSlices(func(a, b string) bool { return a < b })}

func TestApply(t *testing.T) {
	web := servicePort(t, "default", "web", nil, "10.244.1.1")
	web2 := servicePort(t, "default", "web", nil, "10.244.1.1", "10.244.1.2")
	db := servicePort(t, "default", "db", nil, "10.244.2.1")
	dns := servicePort(t, "kube-system", "dns", func(sp *doormanv1.ServicePort) {
		sp.Protocol = doormanv1.Protocol_PROTOCOL_UDP
		sp.PortName = ""
		sp.Port = 53
	}, "10.244.3.1")
	node := nodeEntry(t, "node-1", "192.168.0.1")
	bucket := sameBucket(t, 3)
	b0 := doormanv1.Bucket(bucket[0].GetKey())

	for _, tc := range []struct {
		name    string
		initial []*doormanv1.Entry // applied as a full update at version 1
		update  *doormanv1.SyncResponse
		want    []Change
		final   []*doormanv1.Entry
	}{
		{
			name:   "full into empty",
			update: &doormanv1.SyncResponse{Version: 2, Full: true, Upserts: []*doormanv1.Entry{web, node}, ViewDigest: digestOf(web, node)},
			want:   []Change{{Key: "default/web:http/tcp/ipv4", New: web}, {Key: "node", New: node}},
			final:  []*doormanv1.Entry{web, node},
		},
		{
			name:    "full removes what it does not name and keeps unchanged",
			initial: []*doormanv1.Entry{web, db, node},
			update:  &doormanv1.SyncResponse{Version: 2, Full: true, Upserts: []*doormanv1.Entry{web2, node}, ViewDigest: digestOf(web2, node)},
			want: []Change{
				{Key: "default/db:http/tcp/ipv4", Old: db},
				{Key: "default/web:http/tcp/ipv4", Old: web, New: web2},
			},
			final: []*doormanv1.Entry{web2, node},
		},
		{
			name:    "incremental upsert and removal",
			initial: []*doormanv1.Entry{web, db},
			update:  &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{dns}, Removals: []string{db.GetKey()}, ViewDigest: digestOf(web, dns)},
			want: []Change{
				{Key: "default/db:http/tcp/ipv4", Old: db},
				{Key: "kube-system/dns:53/udp/ipv4", New: dns},
			},
			final: []*doormanv1.Entry{web, dns},
		},
		{
			name:    "removal of a key not held is no change",
			initial: []*doormanv1.Entry{web},
			update:  &doormanv1.SyncResponse{Version: 2, Removals: []string{"default/gone:80/tcp/ipv4"}, ViewDigest: digestOf(web)},
			final:   []*doormanv1.Entry{web},
		},
		{
			name:    "nothing differs: version only",
			initial: []*doormanv1.Entry{web, node},
			update:  &doormanv1.SyncResponse{Version: 7, ViewDigest: digestOf(web, node)},
			final:   []*doormanv1.Entry{web, node},
		},
		{
			name:    "upsert with the held digest is no change",
			initial: []*doormanv1.Entry{web},
			update:  &doormanv1.SyncResponse{Version: 2, Upserts: []*doormanv1.Entry{proto.Clone(web).(*doormanv1.Entry)}, ViewDigest: digestOf(web)},
			final:   []*doormanv1.Entry{web},
		},
		{
			name:    "replaced bucket removes what is not upserted, leaves other buckets",
			initial: []*doormanv1.Entry{bucket[0], bucket[1], web},
			update: &doormanv1.SyncResponse{Version: 2, ReplacedBuckets: []uint32{b0}, Upserts: []*doormanv1.Entry{bucket[2]},
				ViewDigest: digestOf(bucket[2], web)},
			want: func() []Change {
				cs := []Change{{Key: bucket[0].GetKey(), Old: bucket[0]}, {Key: bucket[1].GetKey(), Old: bucket[1]}, {Key: bucket[2].GetKey(), New: bucket[2]}}
				sortChanges(cs)
				return cs
			}(),
			final: []*doormanv1.Entry{bucket[2], web},
		},
		{
			name:    "replaced bucket with a removal inside it",
			initial: []*doormanv1.Entry{bucket[0], bucket[1]},
			update: &doormanv1.SyncResponse{Version: 2, ReplacedBuckets: []uint32{b0, b0}, Upserts: []*doormanv1.Entry{bucket[1]}, Removals: []string{bucket[0].GetKey()},
				ViewDigest: digestOf(bucket[1])},
			want:  []Change{{Key: bucket[0].GetKey(), Old: bucket[0]}},
			final: []*doormanv1.Entry{bucket[1]},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := New()
			if tc.initial != nil {
				if _, err := v.Apply(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: tc.initial, ViewDigest: digestOf(tc.initial...)}); err != nil {
					t.Fatalf("initial: %v", err)
				}
			}
			before := snap(v)
			a, err := v.Apply(tc.update)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if diff := cmp.Diff(tc.want, a.Changes, cmpOpts...); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if a.Version != tc.update.GetVersion() || a.PrevVersion != before.Version {
				t.Errorf("versions = %d from %d, want %d from %d", a.Version, a.PrevVersion, tc.update.GetVersion(), before.Version)
			}
			want := New()
			for _, e := range tc.final {
				want.set(e.GetKey(), nil, e)
			}
			want.version = tc.update.GetVersion()
			if diff := cmp.Diff(snap(want), snap(v), cmpOpts...); diff != "" {
				t.Errorf("view after apply (-want +got):\n%s", diff)
			}
			v.Revert(a)
			if diff := cmp.Diff(before, snap(v), cmpOpts...); diff != "" {
				t.Errorf("view after revert (-want +got):\n%s", diff)
			}
		})
	}
}

func sortChanges(cs []Change) {
	slices.SortFunc(cs, func(x, y Change) int { return strings.Compare(x.Key, y.Key) })
}

func TestApplyRejects(t *testing.T) {
	web := servicePort(t, "default", "web", nil, "10.244.1.1")
	db := servicePort(t, "default", "db", nil, "10.244.2.1")
	update := func(upserts ...*doormanv1.Entry) *doormanv1.SyncResponse {
		return &doormanv1.SyncResponse{Version: 5, Upserts: append([]*doormanv1.Entry{db}, upserts...), ViewDigest: digestOf(append([]*doormanv1.Entry{web, db}, upserts...)...)}
	}
	// Only a broken message is rejected whole; an invalid entry is not
	// (TestApplyHoldsInvalidEntries).
	for _, tc := range []struct {
		name   string
		update *doormanv1.SyncResponse
		want   string // substring of the error
	}{
		{"nil update", nil, "empty update"},
		{"version 0", &doormanv1.SyncResponse{Version: 0}, "version 0"},
		{"nil entry", update(nil), "upsert 1: nil entry"},
		{"empty key", update(&doormanv1.Entry{}), "upsert 1: entry with an empty key"},
		{"upserted twice", update(web, web), `entry "default/web:http/tcp/ipv4" upserted twice`},
		{"upserted and removed", &doormanv1.SyncResponse{Version: 5, Upserts: []*doormanv1.Entry{db}, Removals: []string{db.GetKey()}}, "both upserted and removed"},
		{"removed twice", &doormanv1.SyncResponse{Version: 5, Removals: []string{"a", "a"}}, `entry "a" removed twice`},
		{"empty removal", &doormanv1.SyncResponse{Version: 5, Removals: []string{""}}, "removal of an empty key"},
		{"bucket out of range", &doormanv1.SyncResponse{Version: 5, ReplacedBuckets: []uint32{doormanv1.Buckets}}, "replaced bucket 1024 out of range"},
		{"view digest mismatch", &doormanv1.SyncResponse{Version: 5, Upserts: []*doormanv1.Entry{db}, ViewDigest: digestOf(db)}, "view digest mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := New()
			if _, err := v.Apply(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}); err != nil {
				t.Fatal(err)
			}
			before := snap(v)
			_, err := v.Apply(tc.update)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply error = %v, want one containing %q", err, tc.want)
			}
			if diff := cmp.Diff(before, snap(v), cmpOpts...); diff != "" {
				t.Errorf("view changed by a rejected update (-want +got):\n%s", diff)
			}
		})
	}
}

// TestApplyHoldsInvalidEntries: an upsert that fails the shared validator
// does not fail its update: the view holds it under the digest it
// announces (so the view digest is the control plane's) and lists it in
// Applied.Invalid with the validator's reason; the other entries apply.
func TestApplyHoldsInvalidEntries(t *testing.T) {
	web := servicePort(t, "default", "web", nil, "10.244.1.1")
	db := servicePort(t, "default", "db", nil, "10.244.2.1")
	mapped := servicePort(t, "default", "lb", func(sp *doormanv1.ServicePort) {
		sp.Family = doormanv1.IPFamily_IP_FAMILY_IPV6
		sp.ClusterIp = "fd00::10"
		sp.Endpoints = nil
		sp.LoadBalancerSourceRanges = []string{"::ffff:10.0.0.0/104"}
	})
	wrongDigest := proto.Clone(db).(*doormanv1.Entry)
	wrongDigest.Digest++
	noValue := &doormanv1.Entry{Key: "default/empty:80/tcp/ipv4", Digest: 7}
	badNode := nodeWithServiceCIDRs(t, "::ffff:10.96.0.0/108")

	v := New()
	if _, err := v.Apply(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}); err != nil {
		t.Fatal(err)
	}
	upserts := []*doormanv1.Entry{wrongDigest, mapped, noValue, badNode}
	a, err := v.Apply(&doormanv1.SyncResponse{Version: 2, Upserts: upserts, ViewDigest: digestOf(append([]*doormanv1.Entry{web}, upserts...)...)})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(a.Changes) != 4 || v.Len() != 5 || v.Version() != 2 {
		t.Fatalf("applied %d changes, view holds %d entries at version %d; want 4, 5, 2", len(a.Changes), v.Len(), v.Version())
	}
	want := map[string]string{
		db.GetKey():       `entry "default/db:http/tcp/ipv4": digest`,
		mapped.GetKey():   `entry "default/lb:http/tcp/ipv6": load balancer source range: CIDR "::ffff:10.0.0.0/104": IPv4-mapped IPv6 prefixes are not allowed`,
		noValue.Key:       `entry "default/empty:80/tcp/ipv4": no value`,
		doormanv1.NodeKey: `entry "node": service CIDR: CIDR "::ffff:10.96.0.0/108": IPv4-mapped`,
	}
	if len(a.Invalid) != len(want) {
		t.Errorf("invalid %v, want %d entries", a.Invalid, len(want))
	}
	for k, w := range want {
		if err := a.Invalid[k]; err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("invalid[%q] = %v, want one containing %q", k, err, w)
		}
	}
	if _, ok := a.Invalid[web.GetKey()]; ok {
		t.Errorf("the valid entry is listed invalid")
	}
	// A cache holds no invalid entry: restoring one fails.
	if _, err := Restore(2, []*doormanv1.Entry{web, mapped}); err == nil || !strings.Contains(err.Error(), "IPv4-mapped") {
		t.Errorf("Restore with an invalid entry: %v, want an error", err)
	}
}

// TestServiceCIDRs: a Node entry's Service CIDRs of either family are
// accepted; one that does not parse, or an IPv4-mapped IPv6 prefix (its
// family would be ambiguous), is refused with an error naming it.
func TestServiceCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cidrs   []string
		wantErr string
	}{
		{name: "none"},
		{name: "both families", cidrs: []string{"10.96.0.0/12", "10.200.0.0/24", "fd00:10:96::/108"}},
		{name: "the whole IPv6 space", cidrs: []string{"::/0"}},
		{name: "not a CIDR", cidrs: []string{"10.96.0.0"}, wantErr: `service CIDR: invalid CIDR "10.96.0.0"`},
		{name: "prefix too long", cidrs: []string{"fd00::/129"}, wantErr: `service CIDR: invalid CIDR "fd00::/129"`},
		{name: "IPv4-mapped", cidrs: []string{"10.96.0.0/12", "::ffff:10.200.0.0/120"}, wantErr: `CIDR "::ffff:10.200.0.0/120": IPv4-mapped IPv6 prefixes are not allowed`},
		{name: "zone", cidrs: []string{"fe80::%eth0/64"}, wantErr: `service CIDR: invalid CIDR "fe80::%eth0/64"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := doormanv1.ValidateEntry(nodeWithServiceCIDRs(t, tc.cidrs...))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateEntry: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `entry "node"`) {
				t.Fatalf("ValidateEntry error = %v, want one naming the node entry and containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestApplyViewDigestIsTyped(t *testing.T) {
	v := New()
	web := servicePort(t, "default", "web", nil)
	_, err := v.Apply(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: 42})
	if !errors.Is(err, ErrViewDigest) {
		t.Fatalf("error %v does not wrap ErrViewDigest", err)
	}
	if v.Len() != 0 || v.Version() != 0 {
		t.Fatalf("view holds %d entries at version %d after a rejected update", v.Len(), v.Version())
	}
}

func TestHolding(t *testing.T) {
	web := servicePort(t, "default", "web", nil, "10.244.1.1")
	v := New()
	if diff := cmp.Diff(&doormanv1.Holding{}, v.Holding(), protocmp.Transform()); diff != "" {
		t.Errorf("empty view holding (-want +got):\n%s", diff)
	}
	if _, err := v.Apply(&doormanv1.SyncResponse{Version: 9, Full: true, Upserts: []*doormanv1.Entry{web}, ViewDigest: digestOf(web)}); err != nil {
		t.Fatal(err)
	}
	var d doormanv1.Digests
	d.Toggle(web.GetKey(), web.GetDigest())
	want := &doormanv1.Holding{Version: 9, ViewDigest: d.View(), BucketDigests: d.BucketList()}
	if diff := cmp.Diff(want, v.Holding(), protocmp.Transform()); diff != "" {
		t.Errorf("holding (-want +got):\n%s", diff)
	}
}

func TestRestore(t *testing.T) {
	web := servicePort(t, "default", "web", nil, "10.244.1.1")
	node := nodeEntry(t, "node-1")
	for _, tc := range []struct {
		name    string
		valid   bool // RestoreValid, not Restore
		version uint64
		entries []*doormanv1.Entry
		wantErr string
	}{
		{name: "empty", version: 0},
		{name: "entries", version: 3, entries: []*doormanv1.Entry{web, node}},
		{name: "entries without version", version: 0, entries: []*doormanv1.Entry{web}, wantErr: "entries without a version"},
		{name: "bad entry", version: 3, entries: []*doormanv1.Entry{{Key: "x"}}, wantErr: `entry "x": no value`},
		{name: "key twice", version: 3, entries: []*doormanv1.Entry{web, node, web}, wantErr: `entry "default/web:http/tcp/ipv4" upserted twice`},
		{name: "key twice, checked as valid", valid: true, version: 3, entries: []*doormanv1.Entry{node, web, node}, wantErr: `entry "` + node.GetKey() + `" upserted twice`},
		{name: "nil, checked as valid", valid: true, version: 3, entries: []*doormanv1.Entry{web, nil}, wantErr: "upsert 1: nil entry"},
		{name: "entries, checked as valid", valid: true, version: 3, entries: []*doormanv1.Entry{web, node}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restore := Restore
			if tc.valid {
				restore = RestoreValid
			}
			v, err := restore(tc.version, tc.entries)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Restore error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Version() != tc.version || v.Digest() != digestOf(tc.entries...) || v.Len() != len(tc.entries) {
				t.Errorf("restored version %d digest %x len %d, want %d %x %d", v.Version(), v.Digest(), v.Len(), tc.version, digestOf(tc.entries...), len(tc.entries))
			}
		})
	}
}
