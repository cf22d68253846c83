package kubeconfig

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestLoadAsksForProtobuf reads a kubeconfig file and checks what a client
// built from it sends to the API server: an Accept header that puts
// protobuf first and admits anything after it.
func TestLoadAsksForProtobuf(t *testing.T) {
	accept := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case accept <- r.Header.Get("Accept"):
		default:
		}
		http.Error(w, "not served", http.StatusNotFound)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	kc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "` + srv.URL + `"}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = client.CoreV1().Services("").List(t.Context(), metav1.ListOptions{})
	got := <-accept
	want := "application/vnd.kubernetes.protobuf, */*"
	if got != want {
		t.Fatalf("Accept = %q, want %q", got, want)
	}
}

func TestLoadNamesMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Load of a missing kubeconfig succeeded")
	}
}
