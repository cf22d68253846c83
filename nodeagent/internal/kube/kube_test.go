package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// apiServer answers the requests Client makes with the given objects and
// records each request's path and query.
func apiServer(t *testing.T, requests chan<- string) *httptest.Server {
	t.Helper()
	cm := corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "doorman-system", Name: "doorman-ca"},
		Data:       map[string]string{"ca.crt": "PEM"},
	}
	slice := discoveryv1.EndpointSlice{
		TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta:  metav1.ObjectMeta{Namespace: "doorman-system", Name: "cp-1", ResourceVersion: "7"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc"), Port: ptr.To(int32(9400))}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests <- r.URL.Path + "?" + r.URL.RawQuery
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		var err error
		switch {
		case r.URL.Path == "/api/v1/namespaces/doorman-system/configmaps/doorman-ca":
			err = enc.Encode(cm)
		case r.URL.Path == "/apis/discovery.k8s.io/v1/namespaces/doorman-system/endpointslices" && r.URL.Query().Get("watch") == "true":
			err = enc.Encode(map[string]any{"type": "ADDED", "object": slice})
		case r.URL.Path == "/apis/discovery.k8s.io/v1/namespaces/doorman-system/endpointslices":
			err = enc.Encode(discoveryv1.EndpointSliceList{
				TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSliceList"},
				ListMeta: metav1.ListMeta{ResourceVersion: "7"},
				Items:    []discoveryv1.EndpointSlice{slice},
			})
		default:
			http.NotFound(w, r)
		}
		if err != nil {
			t.Errorf("encode: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestClient: each read goes to its resource's REST path with the options
// as query parameters, and its answer decodes to the typed object.
func TestClient(t *testing.T) {
	requests := make(chan string, 10)
	srv := apiServer(t, requests)
	c, err := New(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []string
	next := func() { got = append(got, <-requests) }

	cm, err := c.ConfigMaps("doorman-system").Get(ctx, "doorman-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get configmap: %v", err)
	}
	next()
	if diff := cmp.Diff(map[string]string{"ca.crt": "PEM"}, cm.Data); diff != "" {
		t.Errorf("configmap data (-want +got):\n%s", diff)
	}

	eps := c.EndpointSlices("doorman-system")
	list, err := eps.List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=doorman-controlplane"})
	if err != nil {
		t.Fatalf("list endpoint slices: %v", err)
	}
	next()
	var addrs []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			addrs = append(addrs, e.Addresses...)
		}
	}
	if diff := cmp.Diff([]string{"10.0.0.1"}, addrs); diff != "" {
		t.Errorf("listed addresses (-want +got):\n%s", diff)
	}

	wi, err := eps.Watch(ctx, metav1.ListOptions{ResourceVersion: "7"})
	if err != nil {
		t.Fatalf("watch endpoint slices: %v", err)
	}
	next()
	ev := <-wi.ResultChan()
	wi.Stop()
	s, ok := ev.Object.(*discoveryv1.EndpointSlice)
	if ev.Type != watch.Added || !ok || s.Name != "cp-1" {
		t.Errorf("watch event %s %T %v, want ADDED of endpoint slice cp-1", ev.Type, ev.Object, ev.Object)
	}

	want := []string{
		"/api/v1/namespaces/doorman-system/configmaps/doorman-ca?",
		"/apis/discovery.k8s.io/v1/namespaces/doorman-system/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Ddoorman-controlplane",
		"/apis/discovery.k8s.io/v1/namespaces/doorman-system/endpointslices?resourceVersion=7&watch=true",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestAgentAvoidsClientset: the agent's binary must not link client-go's
// generated clientset or informers, whose registration of every API group
// at start-up is what this package exists to avoid, nor gentype and the
// fake machinery it brings (see doc.go).
func TestAgentAvoidsClientset(t *testing.T) {
	if testing.Short() {
		t.Skip("go list skipped in -short mode")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/doorman-proxy/doorman/nodeagent").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "k8s.io/client-go/kubernetes" || p == "k8s.io/client-go/informers" || p == "k8s.io/client-go/gentype" || p == "k8s.io/client-go/testing" ||
			strings.HasPrefix(p, "k8s.io/client-go/kubernetes/") || strings.HasPrefix(p, "k8s.io/client-go/informers/") {
			t.Errorf("the node agent imports %s", p)
		}
	}
}
