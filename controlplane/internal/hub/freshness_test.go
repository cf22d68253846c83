package hub

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// Every update carries the informers' freshness marker as it is when the
// update is made: whole to agents before stream protocol 3, and to later
// ones whole in a stream's first update, then only what moved.
func TestUpdatesCarryFreshness(t *testing.T) {
	for _, protocol := range []uint32{0, 2, version.MovedFreshnessProtocol} {
		t.Run(fmt.Sprintf("protocol %d", protocol), func(t *testing.T) {
			var mu sync.Mutex
			marker := map[string]wire.Versions{"services": {Seen: 10, Changed: 9}, "nodes": {Seen: 20, Changed: 20}}
			h := New(Config{VersionSeed: 1, Freshness: func() map[string]wire.Versions {
				mu.Lock()
				defer mu.Unlock()
				return maps.Clone(marker)
			}})
			h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
			h.MarkReady()
			s, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1", Protocol: protocol})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			next := func() map[string]*doormanv1.ResourceVersions {
				t.Helper()
				f, err := nextFrame(s)
				if err != nil || f == nil {
					t.Fatalf("Next = %v, %v", f, err)
				}
				r := &doormanv1.SyncResponse{}
				if err := proto.Unmarshal(f.Bytes, r); err != nil {
					t.Fatal(err)
				}
				if err := s.Ack(&doormanv1.Ack{Version: r.GetVersion(), ViewDigest: r.GetViewDigest()}); err != nil {
					t.Fatal(err)
				}
				return r.GetFreshness()
			}
			if diff := cmp.Diff(map[string]*doormanv1.ResourceVersions{"services": {Seen: 10, Changed: 9}, "nodes": {Seen: 20, Changed: 20}}, next(), protocmp.Transform()); diff != "" {
				t.Errorf("first update's marker (-want +got):\n%s", diff)
			}
			mu.Lock()
			marker["nodes"] = wire.Versions{Seen: 21, Changed: 21}
			mu.Unlock()
			h.SetNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"a": "b"}},
				Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}}})
			want := map[string]*doormanv1.ResourceVersions{"services": {Seen: 10, Changed: 9}, "nodes": {Seen: 21, Changed: 21}}
			if protocol >= version.MovedFreshnessProtocol {
				want = map[string]*doormanv1.ResourceVersions{"nodes": {Seen: 21, Changed: 21}}
			}
			if diff := cmp.Diff(want, next(), protocmp.Transform()); diff != "" {
				t.Errorf("second update's marker (-want +got):\n%s", diff)
			}
		})
	}
}
