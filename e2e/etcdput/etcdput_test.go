package etcdput

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
)

func TestEncode_RoundTripsThroughTheStorageCodec(t *testing.T) {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"},
		Spec:       corev1.ServiceSpec{LoadBalancerSourceRanges: []string{"::ffff:10.0.0.0/104"}},
	}
	raw, err := Encode(svc)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), "k8s\x00") {
		t.Errorf("value starts %q, want the storage encoding's magic k8s\\x00", raw[:min(4, len(raw))])
	}
	got, _, err := protobuf.NewSerializer(scheme.Scheme, scheme.Scheme).Decode(raw, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(svc, got); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
}

func TestEncode_RefusesObjectWithoutKind(t *testing.T) {
	if _, err := Encode(&corev1.Service{}); err == nil {
		t.Fatal("encoded a Service without apiVersion and kind")
	}
}

func TestTxn(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		answer  string
		wantRev int64
		wantErr string
	}{
		{name: "written", status: http.StatusOK, answer: `{"header":{"revision":"42"},"succeeded":true}`, wantRev: 42},
		{name: "not succeeded", status: http.StatusOK, answer: `{"header":{"revision":"42"}}`, wantErr: "did not succeed"},
		{name: "refused", status: http.StatusBadRequest, answer: `{"error":"too many operations in txn request"}`, wantErr: "400 Bad Request"},
		{name: "no revision", status: http.StatusOK, answer: `{"succeeded":true}`, wantErr: "revision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got txn
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if r.URL.Path != "/v3/kv/txn" || json.Unmarshal(body, &got) != nil {
					t.Errorf("request %s %s", r.URL.Path, body)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.answer)
			}))
			defer srv.Close()
			rev, err := New(srv.URL, nil).Txn(context.Background(), []KV{{Key: "/registry/a", Value: []byte{0, 1}}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || rev != tt.wantRev {
				t.Fatalf("revision %d, error %v; want %d", rev, err, tt.wantRev)
			}
			want := txn{Success: []requestOp{{RequestPut: put{Key: []byte("/registry/a"), Value: []byte{0, 1}}}}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTxn_RefusesTooManyKeys(t *testing.T) {
	kvs := make([]KV, MaxTxnOps+1)
	if _, err := New("http://127.0.0.1:1", nil).Txn(context.Background(), kvs); err == nil {
		t.Fatal("accepted more keys than etcd takes in one transaction")
	}
}
