package model

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// TestBytesPerService pins the memory the model keeps of each Service
// with one slice beside the objects themselves (its indexes and claims),
// which the informers' caches share in their compact forms: at 100,000
// Services each byte here is 100 kB.
func TestBytesPerService(t *testing.T) {
	const n = 5000
	services := make([]*compact.Service, n)
	slices := make([]*compact.Slice, n)
	for i := range n {
		name := fmt.Sprintf("web-%d", i)
		services[i] = compact.FromService(svc(func(s *corev1.Service) {
			s.Name = name
			s.Spec.ClusterIP, s.Spec.ClusterIPs = fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), nil
		}))
		es := slice(name+"-1", discoveryv1.AddressTypeIPv4, map[string]int32{"http": 8080}, ep{ip: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)})
		es.Labels[LabelServiceName] = name
		slices[i] = compact.FromSlice(es)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	m := New()
	for i := range n {
		m.SetCompactService(services[i])
		m.SetCompactSlice(slices[i])
	}
	perService := (int64(heap()) - int64(before)) / n
	runtime.KeepAlive(m)
	runtime.KeepAlive(services)
	runtime.KeepAlive(slices)
	t.Logf("%d bytes per Service", perService)
	if perService > maxBytesPerService {
		t.Errorf("the model keeps %d bytes per Service beside its objects, want at most %d", perService, maxBytesPerService)
	}
}

// maxBytesPerService is what the model keeps (about 560 bytes: its maps'
// entries, the claims and their index) with headroom; a map per Service
// for its slices and another for its claims took about 1,100.
const maxBytesPerService = 700
