package doormanv1

import "testing"

func TestDigestsOrderIndependent(t *testing.T) {
	var a, b Digests
	a.Toggle("default/web:http/tcp/ipv4", 1)
	a.Toggle("default/db:5432/tcp/ipv4", 2)
	b.Toggle("default/db:5432/tcp/ipv4", 2)
	b.Toggle("default/web:http/tcp/ipv4", 1)
	if a.View() != b.View() {
		t.Fatalf("view digests differ: %x != %x", a.View(), b.View())
	}
	b.Toggle("default/web:http/tcp/ipv4", 1)
	b.Toggle("default/web:http/tcp/ipv4", 3)
	if a.View() == b.View() {
		t.Fatalf("a changed value left the view digest unchanged")
	}
	if got := a.Bucket(Bucket("default/db:5432/tcp/ipv4")); got != b.Bucket(Bucket("default/db:5432/tcp/ipv4")) && Bucket("default/db:5432/tcp/ipv4") != Bucket("default/web:http/tcp/ipv4") {
		t.Fatalf("an untouched bucket changed")
	}
	var empty Digests
	a.Toggle("default/web:http/tcp/ipv4", 1)
	a.Toggle("default/db:5432/tcp/ipv4", 2)
	if a != empty {
		t.Fatalf("removing every entry did not give the empty digests")
	}
}

func TestValueDigestStable(t *testing.T) {
	sp := &ServicePort{Namespace: "default", Name: "web", ClusterIp: "10.96.0.10", Port: 80,
		Endpoints: []*Endpoint{{Ip: "10.244.1.2", Port: 8080}}}
	d1, err := ValueDigest(sp)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := ValueDigest(sp)
	sp.Endpoints[0].Port = 8081
	d3, _ := ValueDigest(sp)
	if d1 != d2 || d1 == d3 {
		t.Fatalf("digests: %x %x %x", d1, d2, d3)
	}
}

func TestServicePortKey(t *testing.T) {
	for _, tc := range []struct {
		sp   *ServicePort
		want string
	}{
		{&ServicePort{Namespace: "default", Name: "web", PortName: "http", Port: 80, Protocol: Protocol_PROTOCOL_TCP, Family: IPFamily_IP_FAMILY_IPV4}, "default/web:http/tcp/ipv4"},
		{&ServicePort{Namespace: "kube-system", Name: "dns", Port: 53, Protocol: Protocol_PROTOCOL_UDP, Family: IPFamily_IP_FAMILY_IPV6}, "kube-system/dns:53/udp/ipv6"},
	} {
		if got := ServicePortKey(tc.sp); got != tc.want {
			t.Errorf("ServicePortKey = %q, want %q", got, tc.want)
		}
	}
}
