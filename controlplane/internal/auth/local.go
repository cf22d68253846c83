package auth

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// Defaults of LocalConfig.
const (
	DefaultKeysRefresh       = time.Minute
	DefaultKeysMinRefresh    = 10 * time.Second
	DefaultLocalStartTimeout = 10 * time.Second
)

// tokenLeeway is the clock skew allowed on exp, nbf and iat: the API
// server's own (go-jose's default).
const tokenLeeway = josejwt.DefaultLeeway

// LocalConfig configures the local verification of agents' tokens.
type LocalConfig struct {
	// Keys reads the API server's OIDC discovery and its keys: the API
	// client's REST client (Discovery().RESTClient()), so that it uses
	// the same credentials and CA. Required.
	Keys rest.Interface
	// Pods lists and watches the Pods of the agents' namespace, and the
	// agents' ServiceAccount. Required.
	Pods kubernetes.Interface
	// KeysRefresh is how often the keys are read again (default 1 min).
	KeysRefresh time.Duration
	// KeysMinRefresh: a token naming a key ID the control plane does not
	// know has the keys read again, at most this often (default 10 s).
	KeysMinRefresh time.Duration
	// StartTimeout is how long admissions wait, at start, for the keys
	// and the agents' Pods before they fall back to TokenReviews
	// (default 10 s).
	StartTimeout time.Duration
}

func (c LocalConfig) withDefaults() LocalConfig {
	if c.KeysRefresh <= 0 {
		c.KeysRefresh = DefaultKeysRefresh
	}
	if c.KeysMinRefresh <= 0 {
		c.KeysMinRefresh = DefaultKeysMinRefresh
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultLocalStartTimeout
	}
	return c
}

// local verifies agents' tokens as the API server would: signature by
// one of its service-account keys, issuer, audience, times, subject, and
// the Pod and node the token is bound to, which must still exist.
type local struct {
	cfg       LocalConfig
	namespace string
	keys      *keySet
	pods      *pods
	log       hclog.Logger

	started atomic.Bool
	settled chan struct{} // closed once usable, or once start gave up waiting
	checked atomic.Uint64 // signatures checked
}

// serviceAccountClaims are the claims of a projected ServiceAccount token.
type serviceAccountClaims struct {
	josejwt.Claims
	Kubernetes *struct {
		Namespace      string     `json:"namespace"`
		Pod            *objectRef `json:"pod"`
		Node           *objectRef `json:"node"`
		ServiceAccount *objectRef `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

func newLocal(cfg LocalConfig, agentUser string, timeout time.Duration, log hclog.Logger) (*local, error) {
	if cfg.Keys == nil || cfg.Pods == nil {
		return nil, errors.New("auth: local verification needs a REST client for the keys and a client for the pods")
	}
	sa, ok := strings.CutPrefix(agentUser, "system:serviceaccount:")
	namespace, account, ok2 := strings.Cut(sa, ":")
	if !ok || !ok2 || namespace == "" || account == "" {
		return nil, errors.New("auth: local verification needs the agents to be a service account")
	}
	cfg = cfg.withDefaults()
	return &local{
		cfg:       cfg,
		namespace: namespace,
		keys:      newKeySet(cfg.Keys, cfg.KeysMinRefresh, timeout),
		pods:      newPods(cfg.Pods, namespace, account),
		log:       log,
		settled:   make(chan struct{}),
	}, nil
}

// start watches the agents' Pods and reads the keys, until ctx is done.
func (l *local) start(ctx context.Context) {
	l.started.Store(true)
	firstRead := make(chan error, 1)
	l.pods.run(ctx)
	go l.refreshKeys(ctx, firstRead)
	go l.settle(ctx, firstRead)
}

// refreshKeys reads the keys now and every KeysRefresh, and says when
// they can or cannot be read.
func (l *local) refreshKeys(ctx context.Context, firstRead chan<- error) {
	failing := false
	tick := time.NewTicker(l.cfg.KeysRefresh)
	defer tick.Stop()
	for first := true; ; first = false {
		err := l.keys.refresh(ctx)
		if first {
			firstRead <- err
		}
		switch {
		case err != nil && !failing && !l.keys.loaded():
			l.log.Warn("local token verification off: cannot read the api server's service-account issuer and keys; agents are admitted by TokenReview until they can be read (the control plane needs get on "+discoveryPath+" and "+jwksPath+": ClusterRole system:service-account-issuer-discovery)", "error", err)
		case err != nil && !failing:
			l.log.Warn("cannot read the api server's service-account keys again: the last ones read stay in use", "error", err)
		case err == nil && failing:
			l.log.Info("service-account keys read again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// settle closes settled once the keys are read and the Pods listed, or
// as soon as the keys' first read fails, or after StartTimeout.
func (l *local) settle(ctx context.Context, firstRead <-chan error) {
	defer close(l.settled)
	ctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	select {
	case err := <-firstRead:
		if err != nil {
			return
		}
	case <-ctx.Done():
		l.log.Warn("service-account keys not read yet: agents are admitted by TokenReview until they are")
		return
	}
	if !cache.WaitForCacheSync(ctx.Done(), l.pods.synced) {
		l.log.Warn("agents' pods not listed yet: agents are admitted by TokenReview until they are (the control plane needs list and watch on pods)", "namespace", l.namespace)
		return
	}
	issuer, _, _ := l.keys.issuerAndKey("")
	l.log.Info("agents' tokens verified locally", "issuer", issuer, "pods", len(l.pods.informer.GetStore().ListKeys()))
}

// usable waits for start to settle, then reports whether the keys were
// read and the Pods listed.
func (l *local) usable(ctx context.Context) bool {
	if !l.started.Load() {
		return false
	}
	select {
	case <-l.settled:
	case <-ctx.Done():
		return false
	}
	return l.keys.loaded() && l.pods.synced()
}

// admit verifies an agent's token. handled is false when the token is
// not one the API server's service-account issuer signed with a key the
// control plane knows, or it cannot verify tokens yet: a TokenReview
// decides then.
func (l *local) admit(ctx context.Context, token string, audiences []string, agentUser string, now time.Time) (out outcome, handled bool) {
	tok, err := josejwt.ParseSigned(token, signatureAlgorithms)
	if err != nil || len(tok.Headers) != 1 || !l.usable(ctx) {
		return outcome{}, false
	}
	var unverified josejwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return outcome{}, false
	}
	hdr := tok.Headers[0]
	issuer, key, ok := l.keys.issuerAndKey(hdr.KeyID)
	if !ok && unverified.Issuer == issuer {
		l.keys.refreshForUnknown(ctx)
		issuer, key, ok = l.keys.issuerAndKey(hdr.KeyID)
	}
	if !ok || unverified.Issuer != issuer {
		return outcome{}, false
	}
	if key.Algorithm != "" && key.Algorithm != hdr.Algorithm {
		return refuse(codes.Unauthenticated, "invalid token: key %s is for %s, not %s", hdr.KeyID, key.Algorithm, hdr.Algorithm), true
	}
	l.checked.Add(1)
	var claims serviceAccountClaims
	if err := tok.Claims(key.Key, &claims); err != nil {
		l.log.Debug("token refused", "error", err)
		return refuse(codes.Unauthenticated, "invalid token"), true
	}
	return l.admitClaims(claims, issuer, audiences, agentUser, now)
}

// admitClaims checks a verified token's claims, its ServiceAccount and
// its Pod. Tokens of other ServiceAccounts are left to a TokenReview:
// only the API server knows whether they still exist.
func (l *local) admitClaims(c serviceAccountClaims, issuer string, audiences []string, agentUser string, now time.Time) (outcome, bool) {
	if c.Expiry == nil {
		return refuse(codes.Unauthenticated, "invalid token: no expiry"), true
	}
	if err := c.ValidateWithLeeway(josejwt.Expected{Issuer: issuer, AnyAudience: audiences, Time: now}, tokenLeeway); err != nil {
		if errors.Is(err, josejwt.ErrInvalidAudience) {
			return refuse(codes.Unauthenticated, "the token is not for audience %s", strings.Join(audiences, ",")), true
		}
		return refuse(codes.Unauthenticated, "invalid token: %v", err), true
	}
	k := c.Kubernetes
	if c.Subject != agentUser || k == nil || k.Namespace != l.namespace || k.ServiceAccount == nil {
		return outcome{}, false
	}
	if err := l.pods.checkAccount(k.ServiceAccount.UID); err != nil {
		l.log.Debug("token refused", "error", err)
		return refuse(codes.Unauthenticated, "invalid token: %v", err), true
	}
	if k.Pod == nil || k.Pod.Name == "" || k.Pod.UID == "" || k.Node == nil || k.Node.Name == "" {
		return refuse(codes.PermissionDenied, "the token is not bound to a Pod on a node"), true
	}
	if err := l.pods.check(*k.Pod, k.Node.Name); err != nil {
		l.log.Debug("token refused", "error", err)
		return refuse(codes.Unauthenticated, "invalid token: %v", err), true
	}
	return outcome{node: k.Node.Name, expires: c.Expiry.Time(), pod: *k.Pod}, true
}

func refuse(code codes.Code, format string, args ...any) outcome {
	return outcome{err: status.Errorf(code, format, args...)}
}
