package credentials

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/doorman-proxy/doorman/nodeagent/internal/kube/kubetest"
)

func TestToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		content *string // nil = no file
		want    map[string]string
		wantErr string
	}{
		{name: "token", content: ptr("abc\n"), want: map[string]string{"authorization": "Bearer abc"}},
		{name: "rotated", content: ptr("def"), want: map[string]string{"authorization": "Bearer def"}},
		{name: "empty", content: ptr(" \n"), wantErr: "is empty"},
		{name: "missing", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_ = os.Remove(path)
			if tt.content != nil {
				write(*tt.content)
			}
			got, err := Token{Path: path}.GetRequestMetadata(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
		})
	}
	if !(Token{}).RequireTransportSecurity() {
		t.Error("RequireTransportSecurity must be true")
	}
}

func ptr[T any](v T) *T { return &v }

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) serving(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshake runs a TLS server on loopback with cert and returns the
// client handshake's error.
func handshake(t *testing.T, trust *Trust, serverName string, cert tls.Certificate) error {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		_ = c.(*tls.Conn).Handshake()
		_ = c.Close()
	}()
	raw, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := Transport(trust, serverName).ClientHandshake(ctx, "127.0.0.1", raw)
	if err == nil {
		_ = conn.Close()
	}
	return err
}

func TestTransport(t *testing.T) {
	good := newTestCA(t)
	other := newTestCA(t)
	const name = "doorman-controlplane.doorman-system.svc"
	tests := []struct {
		name       string
		trusted    []byte
		cert       tls.Certificate
		serverName string
		wantErr    string
	}{
		{name: "trusted", trusted: good.pem, cert: good.serving(t, name), serverName: name},
		{name: "another ca", trusted: good.pem, cert: other.serving(t, name), serverName: name, wantErr: "unknown authority"},
		{name: "another name", trusted: good.pem, cert: good.serving(t, "evil.example"), serverName: name, wantErr: "valid for evil.example"},
		{name: "bundle without a certificate", trusted: []byte("junk"), cert: good.serving(t, name), serverName: name, wantErr: "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ca.crt")
			if err := os.WriteFile(path, tt.trusted, 0o600); err != nil {
				t.Fatal(err)
			}
			err := handshake(t, NewTrust(FileCA(path), nil), tt.serverName, tt.cert)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTrustReloads(t *testing.T) {
	oldCA, newCA := newTestCA(t), newTestCA(t)
	const name = "cp"
	client := fake.NewClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "doorman-system", Name: "doorman-ca"},
		Data:       map[string]string{CACertKey: string(oldCA.pem)},
	})
	trust := NewTrust(ConfigMapCA(kubetest.Clientset(client), "doorman-system", "doorman-ca"), nil)
	now := time.Unix(1000, 0)
	trust.now = func() time.Time { return now }
	if err := handshake(t, trust, name, oldCA.serving(t, name)); err != nil {
		t.Fatalf("old ca: %v", err)
	}
	// The control plane rotates its CA and publishes the new one.
	cm, _ := client.CoreV1().ConfigMaps("doorman-system").Get(context.Background(), "doorman-ca", metav1.GetOptions{})
	cm.Data[CACertKey] = string(newCA.pem)
	if _, err := client.CoreV1().ConfigMaps("doorman-system").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	if err := handshake(t, trust, name, newCA.serving(t, name)); err == nil {
		t.Fatal("reloaded within the refresh interval")
	}
	now = now.Add(refreshInterval)
	if err := handshake(t, trust, name, newCA.serving(t, name)); err != nil {
		t.Fatalf("new ca not picked up: %v", err)
	}
	// A configmap that disappears keeps the loaded bundle.
	if err := client.CoreV1().ConfigMaps("doorman-system").Delete(context.Background(), "doorman-ca", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(refreshInterval)
	if err := handshake(t, trust, name, newCA.serving(t, name)); err != nil {
		t.Fatalf("after the configmap went: %v", err)
	}
}

func TestDialOptions(t *testing.T) {
	client := kubetest.Clientset(fake.NewClientset())
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "insecure", cfg: Config{Insecure: true}},
		{name: "insecure with token", cfg: Config{Insecure: true, TokenFile: "/nonexistent"}},
		{name: "secure from file", cfg: Config{TokenFile: "/t", CAFile: "/ca"}},
		{name: "secure from configmap", cfg: Config{TokenFile: "/t", CAConfigMap: "doorman-system/doorman-ca", Client: client}},
		{name: "no token", cfg: Config{CAFile: "/ca"}, wantErr: "token file is required"},
		{name: "no ca", cfg: Config{TokenFile: "/t"}, wantErr: "ca file or a ca configmap"},
		{name: "bad configmap name", cfg: Config{TokenFile: "/t", CAConfigMap: "doorman-ca", Client: client}, wantErr: "want namespace/name"},
		{name: "configmap without client", cfg: Config{TokenFile: "/t", CAConfigMap: "a/b"}, wantErr: "no kubernetes client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := DialOptions(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || len(opts) == 0 {
					t.Fatalf("DialOptions: %v, %d options", err, len(opts))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestInsecureSendsNoToken: over plaintext (--insecure) the agent sends no
// token, even with a token file there.
func TestInsecureSendsNoToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("secret-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan metadata.MD, 1)
	g := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		seen <- md
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)

	opts, err := DialOptions(Config{Insecure: true, TokenFile: path})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if md := <-seen; len(md.Get("authorization")) != 0 {
		t.Errorf("plaintext call carried authorization %q", md.Get("authorization"))
	}
}
