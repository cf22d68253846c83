package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestCountTokenReviews(t *testing.T) {
	metrics := `# HELP apiserver_request_total [STABLE] Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="resource",subresource="",verb="POST",version="v1"} 1200
apiserver_request_total{code="500",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="serviceaccounts",scope="resource",subresource="token",verb="POST",version="v1"} 1000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="",verb="GET",version="v1"} 77
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="resource",subresource="",verb="POST",version="v1"} 1203
`
	got, err := countTokenReviews(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1203 {
		t.Errorf("countTokenReviews = %g, want 1203", got)
	}
	if _, err := countTokenReviews(`apiserver_request_total{resource="tokenreviews",verb="POST"} x`); err == nil {
		t.Error("countTokenReviews of a sample that is no number: no error")
	}
}

func TestAgentBackoff(t *testing.T) {
	for failures, want := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000} {
		want *= time.Millisecond
		for range 100 {
			if d := agentBackoff(failures); d < want/2 || d >= want {
				t.Fatalf("agentBackoff(%d) = %s, want in [%s, %s)", failures, d, want/2, want)
			}
		}
	}
}

// agentServer is an AgentService that refuses callers whose peer address
// or token is not the expected one, and otherwise sends one empty full
// view and waits for its Ack.
type agentServer struct {
	doormanv1.UnimplementedAgentServiceServer
	cert   *tls.Certificate // TLS and a token; nil: plaintext and none
	refuse codes.Code       // refuse every admitted caller with it; OK: serve
	acks   chan *doormanv1.Ack
}

func (s *agentServer) admit(ss grpc.ServerStream) error {
	p, _ := peer.FromContext(ss.Context())
	md, _ := metadata.FromIncomingContext(ss.Context())
	if ip := p.Addr.(*net.TCPAddr).IP; !ip.Equal(simSourceIP(300)) {
		return status.Errorf(codes.PermissionDenied, "peer %s", ip)
	}
	var want []string
	if s.cert != nil {
		want = []string{"Bearer tok-300"}
	}
	if got := md.Get("authorization"); !slices.Equal(got, want) {
		return status.Errorf(codes.Unauthenticated, "authorization %q, want %q", got, want)
	}
	if s.refuse != codes.OK {
		return status.Error(s.refuse, "refused")
	}
	return nil
}

func (s *agentServer) Sync(stream doormanv1.AgentService_SyncServer) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	var empty doormanv1.Digests
	if err := stream.Send(&doormanv1.SyncResponse{Version: 7, Full: true, ViewDigest: empty.View()}); err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	s.acks <- req.GetAck()
	<-stream.Context().Done()
	return nil
}

func serveAgents(t *testing.T, srv *agentServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := srv.admit(ss); err != nil {
			return err
		}
		return h(s, ss)
	})}
	if srv.cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(srv.cert)))
	}
	gs := grpc.NewServer(opts...)
	doormanv1.RegisterAgentServiceServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

// selfSigned is a certificate for the control plane's Service name, and
// the pool that trusts it.
func selfSigned(t *testing.T) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doorman-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cluster.ControlPlaneServerName}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// A simulated agent dials from its own address, over TLS with its token
// or in plaintext without, and the benchmark counts the streams its
// control plane refused before any update by code, apart from those it
// served.
func TestSimAgentSession(t *testing.T) {
	cert, ca := selfSigned(t)
	for _, tt := range []struct {
		name   string
		secure bool
		refuse codes.Code
	}{
		{"secured", true, codes.OK},
		{"secured, review put off", true, codes.Unavailable},
		{"secured, refused", true, codes.PermissionDenied},
		{"insecure", false, codes.OK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := &agentServer{refuse: tt.refuse, acks: make(chan *doormanv1.Ack, 1)}
			var pool *x509.CertPool
			if tt.secure {
				srv.cert, pool = cert, ca
			}
			a := &simAgent{name: "sim-00300", token: "tok-300", source: simSourceIP(300), view: newAgentView(newKeyTable())}
			s := &scaleSim{log: hclog.NewNullLogger(), agents: []*simAgent{a}}
			s.beginEpoch()
			cc, err := grpc.NewClient(serveAgents(t, srv), a.dialOptions(pool)...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cc.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			go func() {
				if ack := <-srv.acks; ack.GetVersion() == 7 {
					cancel()
				}
			}()
			acked, err := a.session(ctx, cc, s)
			if got := status.Code(err); tt.refuse != codes.OK && got != tt.refuse {
				t.Fatalf("session ended with %v, want %s", err, tt.refuse)
			}
			if want := tt.refuse == codes.OK; acked != want {
				t.Errorf("acked = %v, want %v (session ended with %v)", acked, want, err)
			}
			for c := range s.firstRecv {
				want := int64(0)
				if codes.Code(c) == tt.refuse && tt.refuse != codes.OK {
					want = 1
				}
				if got := s.firstRecv[c].Load(); got != want {
					t.Errorf("streams refused with %s: %d, want %d", codes.Code(c), got, want)
				}
			}
		})
	}
}
