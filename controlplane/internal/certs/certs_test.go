package certs

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newCA(t *testing.T) *CA {
	t.Helper()
	certPEM, keyPEM, err := NewCA(t0)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func verify(ca *CA, leaf *x509.Certificate, name string, at time.Time) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestIssue(t *testing.T) {
	ca := newCA(t)
	other := newCA(t)
	leaf, err := ca.Issue(ServiceDNSNames("doorman-system", "doorman-controlplane"), []net.IP{net.ParseIP("10.244.1.7")}, t0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ca      *CA
		host    string
		at      time.Time
		wantErr bool
	}{
		{name: "service name", ca: ca, host: "doorman-controlplane.doorman-system.svc", at: t0},
		{name: "short name", ca: ca, host: "doorman-controlplane", at: t0},
		{name: "pod ip", ca: ca, host: "10.244.1.7", at: t0},
		{name: "another ip", ca: ca, host: "10.244.1.8", at: t0, wantErr: true},
		{name: "another name", ca: ca, host: "evil.example", at: t0, wantErr: true},
		{name: "another ca", ca: other, host: "doorman-controlplane", at: t0, wantErr: true},
		{name: "expired", ca: ca, host: "doorman-controlplane", at: t0.Add(LeafLifetime + time.Hour), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verify(tt.ca, leaf.Leaf, tt.host, tt.at)
			if (err != nil) != tt.wantErr {
				t.Fatalf("verify: %v, want error %v", err, tt.wantErr)
			}
		})
	}
	if got := len(leaf.Certificate); got != 2 {
		t.Errorf("chain of %d certificates, want leaf and ca", got)
	}
}

func TestParseCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA(t0)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := NewCA(t0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := newCA(t).Issue([]string{"x"}, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := pemCert(leaf.Certificate[0])
	leafKey := pemKey(t, leaf)
	tests := []struct {
		name    string
		cert    []byte
		key     []byte
		wantErr string
	}{
		{name: "good", cert: certPEM, key: keyPEM},
		{name: "empty", wantErr: "ca key pair"},
		{name: "garbage", cert: []byte("junk"), key: []byte("junk"), wantErr: "ca key pair"},
		{name: "key of another ca", cert: certPEM, key: otherKey, wantErr: "ca key pair"},
		{name: "not a ca", cert: leafPEM, key: leafKey, wantErr: "not a CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCA(tt.cert, tt.key)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if (tt.wantErr == "") != (err == nil) || !strings.Contains(got, tt.wantErr) {
				t.Fatalf("error %q, want one containing %q", got, tt.wantErr)
			}
		})
	}
}

func newManager(t *testing.T, client kubernetes.Interface, now *time.Time) *Manager {
	t.Helper()
	m, err := New(Config{
		Client: client, Namespace: "doorman-system",
		DNSNames: ServiceDNSNames("doorman-system", "doorman-controlplane"),
		IPs:      []net.IP{net.ParseIP("10.244.1.7")},
		Now:      func() time.Time { return *now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func published(t *testing.T, client kubernetes.Interface) string {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps("doorman-system").Get(context.Background(), DefaultConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data[CACertKey]
}

func TestEnsure(t *testing.T) {
	ctx := context.Background()
	now := t0
	client := fake.NewClientset()

	// Two replicas starting at once agree on one CA.
	replicas := []*Manager{newManager(t, client, &now), newManager(t, client, &now)}
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, m := range replicas {
		wg.Go(func() { errs[i] = m.Ensure(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	if diff := cmp.Diff(string(replicas[0].CAPEM()), string(replicas[1].CAPEM())); diff != "" {
		t.Fatalf("replicas' CAs differ (-0 +1):\n%s", diff)
	}
	if diff := cmp.Diff(string(replicas[0].CAPEM()), published(t, client)); diff != "" {
		t.Fatalf("published CA (-want +got):\n%s", diff)
	}
	ca, err := ParseCA(replicas[0].CAPEM(), mustSecret(t, client).Data[CAKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range replicas {
		cert, err := m.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(ca, cert.Leaf, "doorman-controlplane.doorman-system.svc", now); err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}

	t.Run("an edited configmap is corrected", func(t *testing.T) {
		cm, err := client.CoreV1().ConfigMaps("doorman-system").Get(ctx, DefaultConfigMapName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data[CACertKey] = "not a ca"
		if _, err := client.CoreV1().ConfigMaps("doorman-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := replicas[0].Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(replicas[0].CAPEM()), published(t, client)); diff != "" {
			t.Fatalf("published CA (-want +got):\n%s", diff)
		}
	})

	t.Run("a rotated secret is reloaded", func(t *testing.T) {
		certPEM, keyPEM, err := NewCA(now)
		if err != nil {
			t.Fatal(err)
		}
		s := mustSecret(t, client)
		s.Data = map[string][]byte{CACertKey: certPEM, CAKeyKey: keyPEM}
		if _, err := client.CoreV1().Secrets("doorman-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := replicas[1].Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(certPEM), string(replicas[1].CAPEM())); diff != "" {
			t.Fatalf("CA in use (-want +got):\n%s", diff)
		}
		rotated, err := ParseCA(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := replicas[1].GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(rotated, cert.Leaf, "doorman-controlplane", now); err != nil {
			t.Errorf("serving certificate not reissued by the new CA: %v", err)
		}
		if diff := cmp.Diff(string(certPEM), published(t, client)); diff != "" {
			t.Fatalf("published CA (-want +got):\n%s", diff)
		}
	})

	t.Run("a broken secret is reported, not overwritten", func(t *testing.T) {
		s := mustSecret(t, client)
		s.Data[CAKeyKey] = []byte("junk")
		if _, err := client.CoreV1().Secrets("doorman-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := replicas[0].Ensure(ctx)
		if err == nil || !strings.Contains(err.Error(), "secret doorman-system/doorman-controlplane-tls") {
			t.Fatalf("error %v, want one naming the secret", err)
		}
		if got := string(mustSecret(t, client).Data[CAKeyKey]); got != "junk" {
			t.Errorf("secret overwritten")
		}
	})

	t.Run("the serving certificate is renewed before it expires", func(t *testing.T) {
		m := newManager(t, fake.NewClientset(), &now)
		if err := m.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := m.GetCertificate(nil)
		now = now.Add(LeafLifetime / 2)
		same, _ := m.GetCertificate(nil)
		now = now.Add(LeafLifetime / 4)
		renewed, _ := m.GetCertificate(nil)
		if same != first {
			t.Error("reissued at half its lifetime")
		}
		if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
			t.Error("not reissued at three quarters of its lifetime")
		}
	})
}

func TestStartRestores(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := t0
	client := fake.NewClientset()
	m := newManager(t, client, &now)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	want := string(m.CAPEM())
	if err := client.CoreV1().ConfigMaps("doorman-system").Delete(ctx, DefaultConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cm, err := client.CoreV1().ConfigMaps("doorman-system").Get(ctx, DefaultConfigMapName, metav1.GetOptions{})
		if err == nil && cm.Data[CACertKey] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("configmap not restored: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustSecret(t *testing.T, client kubernetes.Interface) *corev1.Secret {
	t.Helper()
	s, err := client.CoreV1().Secrets("doorman-system").Get(context.Background(), DefaultSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
