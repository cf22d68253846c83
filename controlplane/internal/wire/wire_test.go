package wire

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func servicePort(port uint32) *doormanv1.ServicePort {
	return &doormanv1.ServicePort{
		Namespace: "ns", Name: "web", PortName: "http", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.0.0.1", Port: port,
		Endpoints: []*doormanv1.Endpoint{{Ip: "10.1.0.1", Port: 8080}},
	}
}

func TestEntryMatchesProto(t *testing.T) {
	sp := servicePort(80)
	node := &doormanv1.Node{Name: "n1", NodeportAddresses: []string{"172.18.0.2"}, Zone: "z"}
	for _, tt := range []struct {
		name  string
		enc   func() (*Entry, error)
		value proto.Message
		want  func(digest uint64) *doormanv1.Entry
	}{
		{"service port", func() (*Entry, error) { return ServicePort(sp) }, sp, func(d uint64) *doormanv1.Entry {
			return &doormanv1.Entry{Key: "ns/web:http/tcp/ipv4", Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
		}},
		{"node", func() (*Entry, error) { return Node(node) }, node, func(d uint64) *doormanv1.Entry {
			return &doormanv1.Entry{Key: doormanv1.NodeKey, Digest: d, Value: &doormanv1.Entry_Node{Node: node}}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.enc()
			if err != nil {
				t.Fatal(err)
			}
			digest, err := doormanv1.ValueDigest(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if e.Digest != digest {
				t.Errorf("digest %x, doormanv1.ValueDigest %x", e.Digest, digest)
			}
			want := tt.want(digest)
			got, err := e.Message()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("decoded entry (-want +got):\n%s", diff)
			}
			wantBytes, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			if string(wantBytes) != string(e.Bytes) {
				t.Errorf("entry bytes differ from proto.Marshal")
			}
		})
	}
}

// An entry's Hash is what an agent's doormanv1.Digests toggles in for it,
// so the control plane's digests compare equal to the agent's.
func TestHashMatchesDigests(t *testing.T) {
	for _, name := range []string{"node1", "n", ""} {
		e, err := Node(&doormanv1.Node{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		var d doormanv1.Digests
		d.Toggle(e.Key, e.Digest)
		if e.Hash != d.View() {
			t.Errorf("entry %q: Hash %x, doormanv1.Digests has %x", e.Key, e.Hash, d.View())
		}
	}
}

func TestFrame(t *testing.T) {
	a, err := ServicePort(servicePort(80))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ServicePort(servicePort(81))
	if err != nil {
		t.Fatal(err)
	}
	am, _ := a.Message()
	bm, _ := b.Message()
	// Entries whose trigger times travel beside them: the update carries
	// the newest, unless it is full.
	byNode := func(port uint32, trigger int64) (*Entry, *doormanv1.Entry) {
		e, err := ServicePort(servicePort(port))
		if err != nil {
			t.Fatal(err)
		}
		e.Trigger, e.TriggerOutside = trigger, true
		m, _ := e.Message()
		return e, m
	}
	c, cm := byNode(82, 5)
	d, dm := byNode(83, 9)
	for _, tt := range []struct {
		name   string
		update Update
		want   *doormanv1.SyncResponse
	}{
		{"empty", Update{}, &doormanv1.SyncResponse{}},
		{"version only", Update{Version: 7, ViewDigest: 9}, &doormanv1.SyncResponse{Version: 7, ViewDigest: 9}},
		{
			"freshness",
			Update{Version: 7, Freshness: map[string]Versions{"services": {Seen: 1 << 40, Changed: 1 << 39}, "nodes": {}, "endpointslices": {Seen: 12}}},
			&doormanv1.SyncResponse{Version: 7, Freshness: map[string]*doormanv1.ResourceVersions{
				"services": {Seen: 1 << 40, Changed: 1 << 39}, "nodes": {}, "endpointslices": {Seen: 12}}},
		},
		{
			"trigger times beside entries",
			Update{Version: 7, Upserts: []*Entry{a, d, c}},
			&doormanv1.SyncResponse{Version: 7, Upserts: []*doormanv1.Entry{am, dm, cm}, TriggerTimeUnixNano: 9},
		},
		{
			"trigger times beside entries, full",
			Update{Version: 7, Full: true, Upserts: []*Entry{c}},
			&doormanv1.SyncResponse{Version: 7, Full: true, Upserts: []*doormanv1.Entry{cm}},
		},
		{
			"everything",
			Update{Version: 1 << 60, Full: true, ReplacedBuckets: []uint32{0, 3, 1023}, Upserts: []*Entry{a, b}, Removals: []string{"x", "y"}, ViewDigest: ^uint64(0)},
			&doormanv1.SyncResponse{Version: 1 << 60, Full: true, ReplacedBuckets: []uint32{0, 3, 1023}, Upserts: []*doormanv1.Entry{am, bm}, Removals: []string{"x", "y"}, ViewDigest: ^uint64(0)},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.update.Frame()
			if len(f.Bytes) > tt.update.Size() {
				t.Errorf("frame of %d bytes, Size says at most %d", len(f.Bytes), tt.update.Size())
			}
			got := &doormanv1.SyncResponse{}
			if err := proto.Unmarshal(f.Bytes, got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("decoded frame (-want +got):\n%s", diff)
			}
			wantBytes, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tt.want)
			if string(wantBytes) != string(f.Bytes) {
				t.Errorf("frame bytes differ from proto.Marshal")
			}
		})
	}
}

func TestMoved(t *testing.T) {
	held := map[string]Versions{"services": {Seen: 5, Changed: 4}, "nodes": {Seen: 5, Changed: 1}, "servicecidrs": {Seen: 3}}
	now := map[string]Versions{"services": {Seen: 6, Changed: 4}, "nodes": {Seen: 5, Changed: 1}, "endpointslices": {Seen: 6, Changed: 6}}
	moved := Moved(held, now)
	want := map[string]Versions{"services": {Seen: 6, Changed: 4}, "endpointslices": {Seen: 6, Changed: 6}}
	if diff := cmp.Diff(want, moved); diff != "" {
		t.Errorf("Moved (-want +got):\n%s", diff)
	}
	// servicecidrs stopped being marked: the agent keeps what it holds.
	merged := Merged(held, moved)
	wantMerged := map[string]Versions{"services": {Seen: 6, Changed: 4}, "nodes": {Seen: 5, Changed: 1}, "servicecidrs": {Seen: 3}, "endpointslices": {Seen: 6, Changed: 6}}
	if diff := cmp.Diff(wantMerged, merged); diff != "" {
		t.Errorf("Merged (-want +got):\n%s", diff)
	}
	if m := Moved(merged, now); m != nil {
		t.Errorf("Moved of an unchanged marker = %v, want nil", m)
	}
	if held["services"].Seen != 5 {
		t.Error("Merged modified the marker held")
	}
}

// A shared body's upserts follow the update's own fields and decode as
// upserts of the same message.
func TestSharedBody(t *testing.T) {
	a, err := ServicePort(servicePort(80))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ServicePort(servicePort(81))
	if err != nil {
		t.Fatal(err)
	}
	am, _ := a.Message()
	bm, _ := b.Message()
	u := Update{Version: 5, Full: true, Upserts: []*Entry{b}, Shared: NewBody([]*Entry{a}), ViewDigest: 9}
	f := u.Frame()
	if len(f.Bytes) > u.Size() {
		t.Errorf("frame of %d bytes, Size says at most %d", len(f.Bytes), u.Size())
	}
	if own := u.AppendOwn(nil); string(append(own, u.Shared.Bytes...)) != string(f.Bytes) {
		t.Errorf("own bytes followed by the shared body differ from the frame")
	}
	got := &doormanv1.SyncResponse{}
	if err := proto.Unmarshal(f.Bytes, got); err != nil {
		t.Fatal(err)
	}
	want := &doormanv1.SyncResponse{Version: 5, Full: true, Upserts: []*doormanv1.Entry{bm, am}, ViewDigest: 9}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("decoded frame (-want +got):\n%s", diff)
	}
}
