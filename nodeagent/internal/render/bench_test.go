package render

import (
	"fmt"
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// benchView has n ClusterIP Services with two endpoints each (NodePorts for
// the first 2,000), as the dataplane's benchmark.
func benchView(n int) map[string]*doormanv1.Entry {
	view := make(map[string]*doormanv1.Entry, n+1)
	view[doormanv1.NodeKey] = &doormanv1.Entry{Key: doormanv1.NodeKey, Value: &doormanv1.Entry_Node{Node: &doormanv1.Node{Name: "n", NodeportAddresses: []string{"10.0.1.1"}}}}
	for i := 0; i < n; i++ {
		sp := &doormanv1.ServicePort{Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Protocol: doormanv1.Protocol_PROTOCOL_TCP,
			Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: fmt.Sprintf("10.%d.%d.%d", 96+i>>16, (i>>8)&0xff, i&0xff), Port: 80,
			Endpoints: []*doormanv1.Endpoint{
				{Ip: fmt.Sprintf("10.%d.%d.%d", 128+i>>16, (i>>8)&0xff, i&0xff), Port: 8080},
				{Ip: fmt.Sprintf("10.%d.%d.%d", 192+(i>>16), (i>>8)&0xff, 0), Port: 8080},
			}}
		if i < 2000 {
			sp.NodePort = uint32(30000 + i)
		}
		e := &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
		view[e.GetKey()] = e
	}
	return view
}

// BenchmarkView renders 100,000 Services × 2 endpoints.
func BenchmarkView(b *testing.B) {
	view := benchView(100000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := View(view)
		if len(t.Invalid) != 0 {
			b.Fatal(t.Invalid)
		}
	}
}
