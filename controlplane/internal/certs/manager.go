package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Default object names and keys.
const (
	DefaultSecretName    = "doorman-controlplane-tls"
	DefaultConfigMapName = "doorman-ca"
	CACertKey            = "ca.crt"
	CAKeyKey             = "ca.key"
)

// Config configures a Manager.
type Config struct {
	Client        kubernetes.Interface
	Namespace     string
	SecretName    string // default DefaultSecretName
	ConfigMapName string // default DefaultConfigMapName
	// DNSNames and IPs are the serving certificate's SANs.
	DNSNames []string
	IPs      []net.IP
	Now      func() time.Time // default time.Now
	Logger   hclog.Logger
}

// Manager keeps the CA objects in place and the serving certificate
// current.
type Manager struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	ca      *CA
	serving *tls.Certificate
}

// ServiceDNSNames are the names of a Service inside the cluster.
func ServiceDNSNames(namespace, service string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// New returns a Manager; Start makes it ready.
func New(cfg Config) (*Manager, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("certs: a client and a namespace are required")
	}
	if len(cfg.DNSNames) == 0 && len(cfg.IPs) == 0 {
		return nil, errors.New("certs: the serving certificate needs a name or an address")
	}
	if cfg.SecretName == "" {
		cfg.SecretName = DefaultSecretName
	}
	if cfg.ConfigMapName == "" {
		cfg.ConfigMapName = DefaultConfigMapName
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Manager{cfg: cfg, log: log}, nil
}

// Start creates the Secret and the ConfigMap if they are missing, loads
// the CA and issues the serving certificate, then keeps watching both
// objects until ctx is done. It returns once the first certificate is
// ready.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.Ensure(ctx); err != nil {
		return err
	}
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
	for _, f := range []struct {
		name     string
		informer func(informers.SharedInformerFactory) cache.SharedIndexInformer
	}{
		{m.cfg.SecretName, func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Core().V1().Secrets().Informer()
		}},
		{m.cfg.ConfigMapName, func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Core().V1().ConfigMaps().Informer()
		}},
	} {
		name := f.name
		factory := informers.NewSharedInformerFactoryWithOptions(m.cfg.Client, 0,
			informers.WithNamespace(m.cfg.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		if _, err := f.informer(factory).AddEventHandler(handler); err != nil {
			return fmt.Errorf("watch %s: %w", name, err)
		}
		factory.Start(ctx.Done())
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			for attempt := 0; ; attempt++ {
				err := m.Ensure(ctx)
				if err == nil || ctx.Err() != nil {
					break
				}
				m.log.Warn("cannot keep the tls objects in place", "error", err, "attempt", attempt)
				select {
				case <-ctx.Done():
					return
				case <-time.After(min(time.Duration(attempt+1)*time.Second, 30*time.Second)):
				}
			}
		}
	}()
	return nil
}

// Ensure makes the Secret and the ConfigMap exist and agree, and loads the
// Secret's CA (reissuing the serving certificate when the CA changed).
func (m *Manager) Ensure(ctx context.Context) error {
	ca, err := m.ensureSecret(ctx)
	if err != nil {
		return err
	}
	if err := m.ensureConfigMap(ctx, ca.CertPEM); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ca != nil && m.ca.Cert.Equal(ca.Cert) && m.serving != nil {
		return nil
	}
	serving, err := ca.Issue(m.cfg.DNSNames, m.cfg.IPs, m.cfg.Now())
	if err != nil {
		return err
	}
	if m.ca != nil {
		m.log.Info("ca changed: serving certificate reissued", "ca", ca.Cert.Subject.CommonName)
	} else {
		m.log.Info("serving certificate issued", "ca", ca.Cert.Subject.CommonName, "dns", m.cfg.DNSNames, "ips", m.cfg.IPs, "not_after", serving.Leaf.NotAfter)
	}
	m.ca, m.serving = ca, serving
	return nil
}

// ensureSecret returns the CA of the Secret, creating the Secret if it is
// missing. Of two replicas creating it at once one wins; the other reads
// the winner's.
func (m *Manager) ensureSecret(ctx context.Context) (*CA, error) {
	secrets := m.cfg.Client.CoreV1().Secrets(m.cfg.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		s, err := secrets.Get(ctx, m.cfg.SecretName, metav1.GetOptions{})
		if err == nil {
			ca, perr := ParseCA(s.Data[CACertKey], s.Data[CAKeyKey])
			if perr != nil {
				// Never overwrite a Secret someone else may have put there
				// on purpose: say what is wrong with it.
				return nil, fmt.Errorf("secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, perr)
			}
			return ca, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, err)
		}
		certPEM, keyPEM, err := NewCA(m.cfg.Now())
		if err != nil {
			return nil, err
		}
		_, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.cfg.SecretName, Namespace: m.cfg.Namespace, Labels: labels()},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{CACertKey: certPEM, CAKeyKey: keyPEM},
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			m.log.Info("created the ca secret", "secret", m.cfg.Namespace+"/"+m.cfg.SecretName)
			return ParseCA(certPEM, keyPEM)
		case apierrors.IsAlreadyExists(err):
			continue // another replica was first: read its CA
		default:
			return nil, fmt.Errorf("create secret %s/%s: %w", m.cfg.Namespace, m.cfg.SecretName, err)
		}
	}
	return nil, fmt.Errorf("secret %s/%s: created and deleted under us repeatedly", m.cfg.Namespace, m.cfg.SecretName)
}

// ensureConfigMap publishes the CA certificate, creating or correcting the
// ConfigMap; conflicts with another replica are retried.
func (m *Manager) ensureConfigMap(ctx context.Context, caPEM []byte) error {
	cms := m.cfg.Client.CoreV1().ConfigMaps(m.cfg.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		cm, err := cms.Get(ctx, m.cfg.ConfigMapName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = cms.Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: m.cfg.ConfigMapName, Namespace: m.cfg.Namespace, Labels: labels()},
				Data:       map[string]string{CACertKey: string(caPEM)},
			}, metav1.CreateOptions{})
			if err == nil {
				m.log.Info("published the ca", "configmap", m.cfg.Namespace+"/"+m.cfg.ConfigMapName)
				return nil
			}
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			return fmt.Errorf("create configmap %s/%s: %w", m.cfg.Namespace, m.cfg.ConfigMapName, err)
		case err != nil:
			return fmt.Errorf("get configmap %s/%s: %w", m.cfg.Namespace, m.cfg.ConfigMapName, err)
		}
		if cm.Data[CACertKey] == string(caPEM) {
			return nil
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[CACertKey] = string(caPEM)
		_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
		if err == nil {
			m.log.Info("corrected the published ca", "configmap", m.cfg.Namespace+"/"+m.cfg.ConfigMapName)
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("update configmap %s/%s: %w", m.cfg.Namespace, m.cfg.ConfigMapName, err)
		}
	}
	return fmt.Errorf("configmap %s/%s: conflicts did not settle", m.cfg.Namespace, m.cfg.ConfigMapName)
}

func labels() map[string]string {
	return map[string]string{"app.kubernetes.io/part-of": "doorman", "app.kubernetes.io/managed-by": "doorman-controlplane"}
}

// CAPEM returns the CA certificate in use.
func (m *Manager) CAPEM() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ca == nil {
		return nil
	}
	return m.ca.CertPEM
}

// GetCertificate is tls.Config.GetCertificate: the current serving
// certificate, reissued when it nears its expiry.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.serving == nil {
		return nil, errors.New("no serving certificate yet")
	}
	if now := m.cfg.Now(); NeedsRenewal(m.serving.Leaf, now) {
		serving, err := m.ca.Issue(m.cfg.DNSNames, m.cfg.IPs, now)
		if err != nil {
			m.log.Error("cannot renew the serving certificate", "error", err)
			return m.serving, nil
		}
		m.serving = serving
		m.log.Info("serving certificate renewed", "not_after", serving.Leaf.NotAfter)
	}
	return m.serving, nil
}

// TLSConfig is the server's TLS configuration (TLS 1.3, HTTP/2 for gRPC).
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: m.GetCertificate,
		NextProtos:     []string{"h2"},
	}
}
