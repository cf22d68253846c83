package state

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// FuzzApply feeds arbitrary bytes, read as an update, to a view that holds
// a few entries: Apply must not panic, must leave the view unchanged when it
// rejects the update, and Revert must undo what it accepts.
func FuzzApply(f *testing.F) {
	web := servicePort(f, "default", "web", nil, "10.244.1.1")
	db := servicePort(f, "default", "db", nil, "10.244.2.1")
	node := nodeEntry(f, "node-1", "192.168.0.1")
	dns := servicePort(f, "kube-system", "dns", func(sp *doormanv1.ServicePort) {
		sp.Family = doormanv1.IPFamily_IP_FAMILY_IPV6
		sp.ClusterIp = "fd00::a"
		sp.Endpoints = []*doormanv1.Endpoint{{Ip: "fd00:1::1", Port: 53}}
	})
	withCIDRs := nodeWithServiceCIDRs(f, "10.96.0.0/12", "fd00:10:96::/108")
	for _, u := range []*doormanv1.SyncResponse{
		{Version: 2, Full: true, Upserts: []*doormanv1.Entry{web, node}, ViewDigest: digestOf(web, node)},
		{Version: 2, Upserts: []*doormanv1.Entry{withCIDRs}, ViewDigest: digestOf(web, db, withCIDRs)},
		{Version: 2, Upserts: []*doormanv1.Entry{dns}, Removals: []string{db.GetKey()}, ViewDigest: digestOf(web, node, dns)},
		{Version: 2, ReplacedBuckets: []uint32{doormanv1.Bucket(web.GetKey())}, ViewDigest: digestOf(db, node)},
		{Version: 2, Upserts: []*doormanv1.Entry{web}, Removals: []string{web.GetKey()}},
		{Version: 2, ViewDigest: digestOf(web, db, node)},
	} {
		b, err := proto.Marshal(u)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var u doormanv1.SyncResponse
		if err := proto.Unmarshal(b, &u); err != nil {
			return
		}
		v, err := Restore(1, []*doormanv1.Entry{web, db, node})
		if err != nil {
			t.Fatal(err)
		}
		before := snap(v)
		a, err := v.Apply(&u)
		if err != nil {
			if diff := cmp.Diff(before, snap(v), cmpOpts...); diff != "" {
				t.Fatalf("rejected update changed the view (-want +got):\n%s", diff)
			}
			return
		}
		if v.Digest() != u.GetViewDigest() || v.Version() != u.GetVersion() {
			t.Fatalf("accepted update left digest %x version %d, announced %x %d", v.Digest(), v.Version(), u.GetViewDigest(), u.GetVersion())
		}
		v.Revert(a)
		if diff := cmp.Diff(before, snap(v), cmpOpts...); diff != "" {
			t.Fatalf("revert did not restore the view (-want +got):\n%s", diff)
		}
	})
}
