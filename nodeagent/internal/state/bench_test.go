package state

import (
	"fmt"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// BenchmarkApplyOneChange applies one endpoint change to views of growing
// size: the cost must not grow with the view.
func BenchmarkApplyOneChange(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			entries := make([]*doormanv1.Entry, 0, n)
			for i := range n {
				entries = append(entries, servicePort(b, "default", fmt.Sprintf("svc-%06d", i), nil, "10.244.1.1", "10.244.1.2"))
			}
			v, err := Restore(1, entries)
			if err != nil {
				b.Fatal(err)
			}
			a := servicePort(b, "default", "svc-000000", nil, "10.244.1.1", "10.244.1.2")
			c := servicePort(b, "default", "svc-000000", nil, "10.244.1.1", "10.244.1.3")
			base := v.Digest()
			var d doormanv1.Digests
			d.Toggle(a.Key, a.Digest)
			d.Toggle(c.Key, c.Digest)
			updates := [2]*doormanv1.SyncResponse{
				{Upserts: []*doormanv1.Entry{c}, ViewDigest: base ^ d.View()},
				{Upserts: []*doormanv1.Entry{a}, ViewDigest: base},
			}
			version := uint64(1)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				version++
				u := updates[i%2]
				u.Version = version
				if _, err := v.Apply(u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
