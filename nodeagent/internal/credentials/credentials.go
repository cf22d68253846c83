package credentials

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/nodeagent/internal/kube"
)

// Defaults of the agent's flags.
const (
	DefaultTokenFile   = "/var/run/secrets/doorman/token"
	DefaultServerName  = "doorman-controlplane.doorman-system.svc"
	DefaultCAConfigMap = "doorman-system/doorman-ca"
	CACertKey          = "ca.crt"
)

// Token is per-RPC credentials reading a bearer token from a file on
// every call. It travels over TLS only.
type Token struct {
	Path string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t Token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	b, err := os.ReadFile(t.Path)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, fmt.Errorf("read token: %s is empty", t.Path)
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (t Token) RequireTransportSecurity() bool { return true }

// CASource returns the PEM CA bundle to trust.
type CASource func(ctx context.Context) ([]byte, error)

// FileCA reads the bundle from a file.
func FileCA(path string) CASource {
	return func(context.Context) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read ca bundle: %w", err)
		}
		return b, nil
	}
}

// ConfigMapCA reads the bundle from the ca.crt key of a ConfigMap.
func ConfigMapCA(client kube.Interface, namespace, name string) CASource {
	return func(ctx context.Context) ([]byte, error) {
		cm, err := client.ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get ca configmap %s/%s: %w", namespace, name, err)
		}
		b := cm.Data[CACertKey]
		if b == "" {
			return nil, fmt.Errorf("ca configmap %s/%s: no %s", namespace, name, CACertKey)
		}
		return []byte(b), nil
	}
}

// refreshInterval is the least time between two loads of the bundle
// after a failed verification, so a wrong certificate cannot make the
// agent hammer the API server.
const refreshInterval = 5 * time.Second

// Trust holds the CA pool and loads it again when a certificate does not
// verify against it.
type Trust struct {
	source CASource
	log    hclog.Logger
	now    func() time.Time

	mu     sync.Mutex
	pool   *x509.CertPool
	loaded time.Time
}

// NewTrust returns a Trust reading from source.
func NewTrust(source CASource, log hclog.Logger) *Trust {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Trust{source: source, log: log, now: time.Now}
}

func (t *Trust) load(ctx context.Context) (*x509.CertPool, error) {
	pem, err := t.source(ctx)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("ca bundle: no PEM certificate in it")
	}
	return pool, nil
}

// Verify checks a server's chain for serverName, loading the bundle
// first if it never was and again if the chain does not verify and the
// last load is older than refreshInterval.
func (t *Trust) Verify(ctx context.Context, serverName string, chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("tls: the control plane sent no certificate")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		if t.pool == nil || (attempt > 0 && t.now().Sub(t.loaded) >= refreshInterval) {
			pool, err := t.load(ctx)
			t.loaded = t.now()
			if err != nil {
				if t.pool == nil {
					return fmt.Errorf("tls: %w", err)
				}
				t.log.Warn("cannot reload the ca bundle, keeping the one loaded", "error", err)
			} else {
				t.pool = pool
			}
		} else if attempt > 0 {
			break
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		_, lastErr = chain[0].Verify(x509.VerifyOptions{
			Roots: t.pool, Intermediates: inter, DNSName: serverName,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if lastErr == nil {
			return nil
		}
	}
	return fmt.Errorf("tls: the control plane's certificate: %w", lastErr)
}

// Transport returns TLS transport credentials that verify the control
// plane's certificate with trust for serverName ("" = the dialled host).
func Transport(trust *Trust, serverName string) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		// Verification is VerifyConnection's, against a bundle that can
		// change; the standard one would pin the pool at start-up.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			name := serverName
			if name == "" {
				name = cs.ServerName
			}
			return trust.Verify(ctx, name, cs.PeerCertificates)
		},
	}
	return credentials.NewTLS(cfg)
}

// Config is what the agent's flags say about its credentials.
type Config struct {
	// Insecure: plaintext gRPC, and no token: a bearer token in cleartext
	// is anyone's on the path (a control plane in --insecure mode checks
	// none).
	Insecure  bool
	TokenFile string // required unless Insecure; ignored with it
	// CAFile, if set, is the CA bundle; otherwise CAConfigMap
	// ("namespace/name") is read through Client.
	CAFile      string
	CAConfigMap string
	Client      kube.Interface
	ServerName  string // name the control plane's certificate must carry; "" = the dialled host
	Logger      hclog.Logger
}

// DialOptions returns the dial options for the agent's stream.
func DialOptions(cfg Config) ([]grpc.DialOption, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.Insecure {
		log.Warn("plaintext grpc to the control plane, no token sent: for local development only")
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("a token file is required unless insecure")
	}
	opts := []grpc.DialOption{grpc.WithPerRPCCredentials(Token{Path: cfg.TokenFile})}
	var source CASource
	switch {
	case cfg.CAFile != "":
		source = FileCA(cfg.CAFile)
	case cfg.CAConfigMap != "":
		ns, name, ok := strings.Cut(cfg.CAConfigMap, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("ca configmap %q: want namespace/name", cfg.CAConfigMap)
		}
		if cfg.Client == nil {
			return nil, fmt.Errorf("ca configmap %s: no kubernetes client", cfg.CAConfigMap)
		}
		source = ConfigMapCA(cfg.Client, ns, name)
	default:
		return nil, errors.New("a ca file or a ca configmap is required unless insecure")
	}
	trust := NewTrust(source, log.Named("trust"))
	return append(opts, grpc.WithTransportCredentials(Transport(trust, cfg.ServerName))), nil
}
