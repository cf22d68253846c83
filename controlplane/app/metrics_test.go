package app

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestMetrics scrapes /metrics of a running control plane and checks that
// the series exist and move when an EndpointSlice changes and the node
// acknowledges it.
func TestMetrics(t *testing.T) {
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(8080))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}},
	}
	client := fake.NewClientset(
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
			Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.10", ClusterIPs: []string{"10.0.0.10"},
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
		},
		slice,
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
	)
	gl, hl := listenLoopback(t), listenLoopback(t)
	run := startRun(t, Config{Client: client, GRPCListener: gl, HTTPListener: hl, VersionSeed: 42})
	defer run.stop(t)

	_, stream := run.syncAs(t, gl.Addr().String(), "n1")
	ackNext := func() uint64 {
		t.Helper()
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: r.GetVersion(), ViewDigest: r.GetViewDigest()}}}); err != nil {
			t.Fatal(err)
		}
		return r.GetVersion()
	}
	v1 := ackNext()

	// The ack is processed asynchronously: wait for the gauge to show it.
	before := waitSample(t, hl.Addr().String(), `doorman_controlplane_node_acked_version{node="n1"}`, float64(v1))
	for _, series := range []string{
		`doorman_controlplane_connected_nodes`,
		`doorman_controlplane_node_lag_versions{node="n1"}`,
		`doorman_controlplane_nacks_total`,
		`doorman_controlplane_acks_total`,
		`doorman_controlplane_stream_bytes_sent_total`,
		`doorman_controlplane_updates_sent_total`,
		`doorman_controlplane_informer_events_total{kind="endpointslice",op="set"}`,
		`doorman_controlplane_model_recompute_duration_seconds_count`,
	} {
		if _, ok := before[series]; !ok {
			t.Errorf("no series %s", series)
		}
	}
	if got := before["doorman_controlplane_connected_nodes"]; got != 1 {
		t.Errorf("connected nodes %v, want 1", got)
	}

	slice = slice.DeepCopy()
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0.2"}})
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(run.ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	v2 := ackNext()
	if v2 <= v1 {
		t.Fatalf("second update version %d, not after %d", v2, v1)
	}
	after := waitSample(t, hl.Addr().String(), `doorman_controlplane_node_acked_version{node="n1"}`, float64(v2))
	for _, series := range []string{
		`doorman_controlplane_acks_total`,
		`doorman_controlplane_stream_bytes_sent_total`,
		`doorman_controlplane_updates_sent_total`,
		`doorman_controlplane_informer_events_total{kind="endpointslice",op="set"}`,
		`doorman_controlplane_model_recompute_duration_seconds_count`,
		`doorman_controlplane_version`,
	} {
		if after[series] <= before[series] {
			t.Errorf("%s did not grow: %v then %v", series, before[series], after[series])
		}
	}
	if got := after["doorman_controlplane_nacks_total"]; got != 0 {
		t.Errorf("nacks %v, want 0", got)
	}
}

// waitSample scrapes /metrics until series has value want, and returns
// every sample of that scrape.
func waitSample(t *testing.T, addr, series string, want float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		samples := scrapeMetrics(t, addr)
		if samples[series] == want {
			return samples
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 10s, want %v", series, samples[series], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrapeMetrics(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", l, err)
		}
		out[l[:i]] = v
	}
	return out
}
