package render

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// testHash hashes every field of an element.
func testHash(e *Element) uint64 {
	h := fnv.New64a()
	for _, f := range [][]byte{[]byte(e.Set), e.Key, e.KeyEnd, e.Value} {
		_ = binary.Write(h, binary.BigEndian, uint32(len(f)))
		_, _ = h.Write(f)
	}
	_ = binary.Write(h, binary.BigEndian, e.IntervalEnd)
	if e.Verdict != nil {
		_ = binary.Write(h, binary.BigEndian, uint32(e.Verdict.Kind))
		_, _ = h.Write([]byte(e.Verdict.Chain))
	}
	return h.Sum64()
}

// TestSummary: a Summary, in any number of parts, is the View without its
// elements, and its digest is that of the View's elements: the Node entry,
// every kind of Service, shared elements (one ClusterIP on two ports, an
// endpoint behind several Services) far apart in key order, and an entry
// that cannot be rendered. A view with a frontend claimed twice gets no
// Summary.
func TestSummary(t *testing.T) {
	uncontested := partsView()
	for _, key := range []string{"aaa/evil:53/udp/ipv4", "zzy/clash:80/tcp/ipv4"} {
		if _, ok := uncontested[key]; !ok {
			t.Fatalf("partsView has no %s", key)
		}
		delete(uncontested, key)
	}
	views := map[string]map[string]*doormanv1.Entry{
		"small": smallView(), "kinds": kindsView(), "ranges": rangesView(), "shared across parts": uncontested, "2,000 Services": benchView(2000),
	}
	for name, view := range views {
		want := View(view)
		if len(want.Refused) != 0 {
			t.Fatalf("%s: View refused %v", name, want.Refused)
		}
		var wantDigest uint64
		for i := range want.Elements {
			wantDigest += testHash(&want.Elements[i])
		}
		keys, _ := sortedEntries(view, estimateEntry)
		for _, n := range []int{1, 2, 3, 8} {
			t.Run(fmt.Sprintf("%s, %d parts", name, n), func(t *testing.T) {
				got, digest, ok := Options{}.summarize(keys, testHash, n)
				if !ok {
					t.Fatal("no Summary of a view without contested frontends")
				}
				if digest != wantDigest {
					t.Errorf("digest %x, want %x (the View's elements)", digest, wantDigest)
				}
				if got.Elements != nil {
					t.Errorf("Summary holds %d elements", len(got.Elements))
				}
				compareState(t, "-View +Summary", want, got)
			})
		}
	}
	if _, _, ok := (Options{}).Summary(partsView(), testHash); ok {
		t.Error("Summary of a view with contested frontends")
	}
}

// FuzzSummary: for any view of a few Services drawn from small pools of
// addresses and ports (so that ClusterIPs, external addresses, nodePorts
// and endpoints collide, as hostile or mistaken Services make them), a
// Summary in any number of parts holds what View does — digest, owners,
// chain users, chains, claims' owners, invalid entries — or, exactly when
// View refuses some claim, is not given.
func FuzzSummary(f *testing.F) {
	f.Add([]byte{3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add([]byte{2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		view := fuzzView(data)
		want := View(view)
		var wantDigest uint64
		for i := range want.Elements {
			wantDigest += testHash(&want.Elements[i])
		}
		keys, _ := sortedEntries(view, estimateEntry)
		for n := 1; n <= 3; n++ {
			got, digest, ok := Options{}.summarize(keys, testHash, n)
			if ok != (len(want.Refused) == 0) {
				t.Fatalf("%d parts: summarized %v, View refused %v", n, ok, want.Refused)
			}
			if !ok {
				continue
			}
			if digest != wantDigest {
				t.Errorf("%d parts: digest %x, View's elements %x", n, digest, wantDigest)
			}
			compareState(t, fmt.Sprintf("-View +Summary in %d parts", n), want, got)
		}
	})
}

// fuzzView reads a view from data: the first byte is the number of
// Services (up to 12); each takes 8 bytes, each choosing from a pool of
// 4: ClusterIP, protocol and port, endpoints (count and first address),
// external address (none, or one that may be another's ClusterIP),
// nodePort (none or one of 3), affinity, traffic policies, local
// endpoints. Missing bytes are zero.
func fuzzView(data []byte) map[string]*doormanv1.Entry {
	at := func(i int) byte {
		if i < len(data) {
			return data[i]
		}
		return 0
	}
	pool := func(b byte, prefix string) string { return fmt.Sprintf("%s.%d", prefix, b%4+1) }
	view := viewOf(nodeEntry("192.168.1.10"))
	for s := range int(at(0) % 13) {
		b := func(i int) byte { return at(1 + 8*s + i) }
		sp := &doormanv1.ServicePort{Namespace: fmt.Sprintf("ns%d", s), Name: "svc", Protocol: tcp, Family: ipv4,
			ClusterIp: pool(b(0), "10.96.0"), Port: 80 + uint32(b(1)%2)}
		if b(1)&4 != 0 {
			sp.Protocol = udp
		}
		for e := range int(b(2) % 4) {
			sp.Endpoints = append(sp.Endpoints, ep(pool(b(2)>>2+byte(e), "10.244.1"), 8080))
		}
		switch b(3) % 3 {
		case 1:
			sp.ExternalIps = []string{pool(b(3)>>2, "10.96.0")}
		case 2:
			sp.LoadBalancerIps = []string{pool(b(3)>>2, "192.0.2")}
			if b(3)&0x80 != 0 {
				sp.LoadBalancerSourceRanges = []string{"203.0.113.0/24"}
			}
		}
		if np := b(4) % 4; np != 0 {
			sp.NodePort = 30000 + uint32(np)
		}
		if b(5)&1 != 0 {
			sp.AffinityTimeoutSeconds = 60
		}
		sp.InternalPolicyLocal, sp.ExternalPolicyLocal = b(6)&1 != 0, b(6)&2 != 0
		if sp.InternalPolicyLocal {
			sp.ClusterEndpoints = append(sp.ClusterEndpoints, sp.Endpoints...)
			sp.ClusterEndpoints = append(sp.ClusterEndpoints, ep(pool(b(7), "10.244.2"), 8080))
		}
		if sp.ExternalPolicyLocal {
			for e := range int(b(7) % 3) {
				sp.LocalEndpoints = append(sp.LocalEndpoints, ep(pool(byte(e), "10.244.1"), 8080))
			}
		}
		e := spEntry(sp)
		view[e.GetKey()] = e
	}
	return view
}
