package main

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func sp(t *testing.T, name, ip string) *doormanv1.Entry {
	t.Helper()
	v := &doormanv1.ServicePort{Namespace: "ns", Name: name, Port: 80, Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Endpoints: []*doormanv1.Endpoint{{Ip: ip, Port: 8080}}}
	d, err := doormanv1.ValueDigest(v)
	if err != nil {
		t.Fatal(err)
	}
	return &doormanv1.Entry{Key: "ns/" + name + ":80/tcp/ipv4", Digest: d, Value: &doormanv1.Entry_ServicePort{ServicePort: v}}
}

// digestOf is the view digest a control plane would send for entries.
func digestOf(entries ...*doormanv1.Entry) uint64 {
	var d doormanv1.Digests
	for _, e := range entries {
		d.Toggle(e.GetKey(), e.GetDigest())
	}
	return d.View()
}

func held(v *agentView) map[string]uint64 {
	keys, _ := v.keys.snapshot()
	out := map[string]uint64{}
	for i, d := range v.digest {
		if d != 0 {
			out[keys[i]] = d
		}
	}
	return out
}

func TestAgentViewApply(t *testing.T) {
	a1, b1, c1 := sp(t, "a", "10.0.0.1"), sp(t, "b", "10.0.0.2"), sp(t, "c", "10.0.0.3")
	a2 := sp(t, "a", "10.0.0.9")
	v := newAgentView(newKeyTable())

	steps := []struct {
		name    string
		u       *doormanv1.SyncResponse
		want    map[string]uint64
		wantErr bool
	}{
		{"full view", &doormanv1.SyncResponse{Version: 10, Full: true, Upserts: []*doormanv1.Entry{a1, b1}, ViewDigest: digestOf(a1, b1)},
			map[string]uint64{a1.Key: a1.Digest, b1.Key: b1.Digest}, false},
		{"one change", &doormanv1.SyncResponse{Version: 11, Upserts: []*doormanv1.Entry{a2}, ViewDigest: digestOf(a2, b1)},
			map[string]uint64{a2.Key: a2.Digest, b1.Key: b1.Digest}, false},
		{"wrong view digest is refused and changes nothing", &doormanv1.SyncResponse{Version: 12, Upserts: []*doormanv1.Entry{c1}, Removals: []string{b1.Key}, ViewDigest: 12345},
			map[string]uint64{a2.Key: a2.Digest, b1.Key: b1.Digest}, true},
		{"removal and addition", &doormanv1.SyncResponse{Version: 13, Upserts: []*doormanv1.Entry{c1}, Removals: []string{b1.Key}, ViewDigest: digestOf(a2, c1)},
			map[string]uint64{a2.Key: a2.Digest, c1.Key: c1.Digest}, false},
		{"replaced bucket drops what is not upserted", &doormanv1.SyncResponse{Version: 14, ReplacedBuckets: []uint32{doormanv1.Bucket(c1.Key)}, ViewDigest: digestOf(a2)},
			map[string]uint64{a2.Key: a2.Digest}, false},
		{"nothing differs", &doormanv1.SyncResponse{Version: 15, ViewDigest: digestOf(a2)},
			map[string]uint64{a2.Key: a2.Digest}, false},
		{"full view replaces everything", &doormanv1.SyncResponse{Version: 16, Full: true, Upserts: []*doormanv1.Entry{b1}, ViewDigest: digestOf(b1)},
			map[string]uint64{b1.Key: b1.Digest}, false},
		{"entry without digest", &doormanv1.SyncResponse{Version: 17, Upserts: []*doormanv1.Entry{{Key: "x"}}},
			map[string]uint64{b1.Key: b1.Digest}, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := v.version
			err := v.apply(st.u)
			if (err != nil) != st.wantErr {
				t.Fatalf("apply: %v, want error %v", err, st.wantErr)
			}
			if diff := cmp.Diff(st.want, held(v)); diff != "" {
				t.Errorf("held (-want +got):\n%s", diff)
			}
			if st.wantErr && v.version != before {
				t.Errorf("version moved to %d on a refused update", v.version)
			}
			if !st.wantErr && v.d.View() != st.u.GetViewDigest() {
				t.Errorf("view digest %#x, want %#x", v.d.View(), st.u.GetViewDigest())
			}
			if v.entries != len(st.want) {
				t.Errorf("entries %d, want %d", v.entries, len(st.want))
			}
		})
	}
	if h := v.holding(); h.GetVersion() != 16 || len(h.GetBucketDigests()) != doormanv1.Buckets {
		t.Errorf("holding %v", h)
	}
}

// Thousands of simulated agents each keep a view: after a full view an
// agent keeps a digest per key and no more, and not the journal it
// applied the full view with.
func TestAgentViewKeepsNoSpare(t *testing.T) {
	keys := newKeyTable()
	var entries []*doormanv1.Entry
	for i := range 3000 {
		entries = append(entries, sp(t, fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)))
	}
	full := &doormanv1.SyncResponse{Version: 1, Full: true, Upserts: entries, ViewDigest: digestOf(entries...)}
	for _, name := range []string{"first agent", "second agent"} {
		v := newAgentView(keys)
		if err := v.apply(full); err != nil {
			t.Fatal(err)
		}
		if len(v.digest) != 3000 || cap(v.digest) != 3000 {
			t.Errorf("%s: %d digests in room for %d, want 3000 in 3000", name, len(v.digest), cap(v.digest))
		}
		if cap(v.journal) > journalKeep {
			t.Errorf("%s: journal of capacity %d kept after the full view, want at most %d", name, cap(v.journal), journalKeep)
		}
	}
}
