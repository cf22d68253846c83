package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestRunSecured serves over TLS from the CA the control plane creates in
// the cluster and admits an agent only as the node its token is bound to.
func TestRunSecured(t *testing.T) {
	client := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}},
	)
	client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
		tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "agent-n1" && len(tr.Spec.Audiences) == 1 && tr.Spec.Audiences[0] == "doorman" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"doorman"}, User: authenticationv1.UserInfo{
				Username: "system:serviceaccount:doorman-system:doorman-nodeagent",
				Extra:    map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/node-name": {"n1"}},
			}}
		}
		return true, tr, nil
	})
	gl := listenLoopback(t)
	run := startRun(t, Config{Client: client, GRPCListener: gl, VersionSeed: 42, Security: &Security{
		Namespace: "doorman-system", AgentServiceAccount: "doorman-nodeagent",
		DNSNames: []string{"doorman-controlplane.doorman-system.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
	}})
	ctx := run.ctx

	var caPEM string
	deadline := time.Now().Add(10 * time.Second)
	for {
		cm, err := client.CoreV1().ConfigMaps("doorman-system").Get(ctx, "doorman-ca", metav1.GetOptions{})
		if err == nil {
			caPEM = cm.Data["ca.crt"]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ca configmap not published: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("published ca has no certificate")
	}
	dial := func(creds credentials.TransportCredentials) *grpc.ClientConn {
		cc, err := grpc.NewClient(gl.Addr().String(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	secure := dial(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "doorman-controlplane.doorman-system.svc", MinVersion: tls.VersionTLS13}))
	plain := dial(insecure.NewCredentials())

	tests := []struct {
		name     string
		cc       *grpc.ClientConn
		token    string
		node     string
		wantCode codes.Code
	}{
		{name: "plaintext", cc: plain, token: "agent-n1", node: "n1", wantCode: codes.Unavailable},
		{name: "no token", cc: secure, node: "n1", wantCode: codes.Unauthenticated},
		{name: "unknown token", cc: secure, token: "forged", node: "n1", wantCode: codes.Unauthenticated},
		{name: "another node", cc: secure, token: "agent-n1", node: "n2", wantCode: codes.PermissionDenied},
		{name: "own node", cc: secure, token: "agent-n1", node: "n1", wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
			defer scancel()
			if tt.token != "" {
				sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+tt.token)
			}
			var r *doormanv1.SyncResponse
			stream, err := doormanv1.NewAgentServiceClient(tt.cc).Sync(sctx)
			if err == nil {
				if err = stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: tt.node}}}); err == nil || errors.Is(err, io.EOF) {
					r, err = stream.Recv()
				}
			}
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if err == nil && (!r.GetFull() || r.GetVersion() <= 42) {
				t.Errorf("first update %v, want a full one", r)
			}
		})
	}

	run.stop(t)
}
