package agent

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// lbPort is an IPv6 LoadBalancer ServicePort "lb" restricted to ranges.
func lbPort(t *testing.T, ranges ...string) *doormanv1.Entry {
	t.Helper()
	sp := &doormanv1.ServicePort{
		Namespace: "default", Name: "lb", PortName: "http",
		Protocol: doormanv1.Protocol_PROTOCOL_TCP, Family: doormanv1.IPFamily_IP_FAMILY_IPV6,
		ClusterIp: "fd00::10", Port: 80, LoadBalancerIps: []string{"2001:db8::1"},
		LoadBalancerSourceRanges: ranges,
		Endpoints:                []*doormanv1.Endpoint{{Ip: "fd00:1::1", Port: 8080}},
	}
	d, err := doormanv1.ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

// TestInvalidEntryRefusedAlone: an entry that fails the shared validator
// (an IPv4-mapped source range, as an API server before 1.36 stored it)
// never reaches the kernel, holds back nothing else of its update, is
// acknowledged as not programmed (an update of only invalid entries too:
// no NACK), is not tried again, and leaves the kernel with the key's
// previous value until a valid one comes.
func TestInvalidEntryRefusedAlone(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	web2 := servicePort(t, "web", "10.244.1.2")
	db := servicePort(t, "db", "10.244.2.1")
	bad := lbPort(t, "::ffff:10.0.0.0/104")
	bad2 := lbPort(t, "::ffff:10.0.0.0/104", "2001:db8::/32")
	good := lbPort(t, "2001:db8::/32")

	type step struct {
		name        string
		update      *doormanv1.SyncResponse
		wantCalls   []string
		wantReply   *doormanv1.SyncRequest
		wantWarning string // substring of Outcome.Warning
		wantKernel  map[string]*doormanv1.Entry
		wantStore   map[string]*doormanv1.Entry
	}
	steps := []step{{
		name:        "full view with an invalid entry among good ones",
		update:      &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{web, db, bad}, ViewDigest: digestOf(web, db, bad)},
		wantCalls:   []string{"sync"},
		wantReply:   ackNotProgrammed(ack(10, web, db, bad), bad.Key),
		wantWarning: `"default/lb:http/tcp/ipv6": invalid: entry "default/lb:http/tcp/ipv6": load balancer source range: CIDR "::ffff:10.0.0.0/104": IPv4-mapped`,
		wantKernel:  byKey(web, db),
		wantStore:   byKey(web, db),
	}, {
		name:       "a good change: one Apply, the invalid entry still listed",
		update:     &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{web2}, ViewDigest: digestOf(web2, db, bad)},
		wantCalls:  []string{"apply"},
		wantReply:  ackNotProgrammed(ack(11, web2, db, bad), bad.Key),
		wantKernel: byKey(web2, db),
		wantStore:  byKey(web2, db),
	}, {
		name:        "another invalid value alone: acknowledged, the kernel untouched",
		update:      &doormanv1.SyncResponse{Version: 12, Upserts: []*doormanv1.Entry{bad2}, ViewDigest: digestOf(web2, db, bad2)},
		wantReply:   ackNotProgrammed(ack(12, web2, db, bad2), bad.Key),
		wantWarning: "IPv4-mapped",
		wantKernel:  byKey(web2, db),
		wantStore:   byKey(web2, db),
	}, {
		name:       "a valid value: programmed, no longer listed",
		update:     &doormanv1.SyncResponse{Version: 13, Upserts: []*doormanv1.Entry{good}, ViewDigest: digestOf(web2, db, good)},
		wantCalls:  []string{"apply"},
		wantReply:  ack(13, web2, db, good),
		wantKernel: byKey(web2, db, good),
		wantStore:  byKey(web2, db, good),
	}, {
		name:        "invalid again: the kernel keeps the valid value",
		update:      &doormanv1.SyncResponse{Version: 14, Upserts: []*doormanv1.Entry{bad}, ViewDigest: digestOf(web2, db, bad)},
		wantReply:   ackNotProgrammed(ack(14, web2, db, bad), bad.Key),
		wantWarning: "IPv4-mapped",
		wantKernel:  byKey(web2, db, good),
		wantStore:   byKey(web2, db, good),
	}, {
		name:       "removed: the kept value goes",
		update:     &doormanv1.SyncResponse{Version: 15, Removals: []string{bad.Key}, ViewDigest: digestOf(web2, db)},
		wantCalls:  []string{"apply"},
		wantReply:  ack(15, web2, db),
		wantKernel: byKey(web2, db),
		wantStore:  byKey(web2, db),
	}}
	k := newKernel()
	s := &fakeStore{}
	a := New("node-1", state.New(), k, s)
	for _, st := range steps {
		k.ResetCalls()
		out := a.Handle(st.update)
		if diff := cmp.Diff(st.wantReply, out.Reply, protocmp.Transform()); diff != "" {
			t.Errorf("%s: reply (-want +got):\n%s", st.name, diff)
		}
		if out.Err != nil || !errContains(out.Warning, st.wantWarning) || (st.wantWarning == "") != (out.Warning == nil) {
			t.Errorf("%s: err %v, warning %v; want nil, %q", st.name, out.Err, out.Warning, st.wantWarning)
		}
		if diff := cmp.Diff(st.wantCalls, k.Calls()); diff != "" {
			t.Errorf("%s: kernel calls (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.wantKernel, k.Entries(), protocmp.Transform()); diff != "" {
			t.Errorf("%s: kernel (-want +got):\n%s", st.name, diff)
		}
		if diff := cmp.Diff(st.wantStore, s.held, protocmp.Transform()); diff != "" {
			t.Errorf("%s: store (-want +got):\n%s", st.name, diff)
		}
		if st.name == steps[0].name {
			np := a.Status(false).GetNotProgrammed()
			if len(np) != 1 || !strings.Contains(np[0], "invalid value") || !strings.Contains(np[0], "::ffff:10.0.0.0/104") {
				t.Errorf("status not programmed %q, want the invalid entry with its reason", np)
			}
		}
	}
	if c := a.Counters(); c.Nacks != 0 || c.Invalid != 3 || c.Rejections != 0 || c.NotProgrammed != 0 {
		t.Errorf("counters %+v: want no nack, 3 invalid values, no kernel rejection, nothing left out", c)
	}
}

// TestBrokenMessageStillNacked: a message that is broken as a whole (the
// same key twice) is still rejected whole, invalid entries in it or not.
func TestBrokenMessageStillNacked(t *testing.T) {
	web := servicePort(t, "web", "10.244.1.1")
	bad := lbPort(t, "::ffff:10.0.0.0/104")
	a := New("node-1", state.New(), newKernel(), nil)
	out := a.Handle(&doormanv1.SyncResponse{Version: 1, Full: true, Upserts: []*doormanv1.Entry{web, bad, web}})
	if out.Reply.GetNack() == nil || !strings.Contains(out.Err.Error(), "upserted twice") {
		t.Fatalf("reply %v, err %v; want a NACK for the duplicate key", out.Reply, out.Err)
	}
	if c := a.Counters(); c.Invalid != 0 || c.Version != 0 {
		t.Errorf("counters %+v: a broken message recorded something", c)
	}
}
