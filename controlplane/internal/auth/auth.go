package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// NodeNameExtra is the key of the user's extra that names the node of the
// Pod a ServiceAccount token is bound to (kube-apiserver 1.30 and later).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// DefaultAudience is the audience agents' and Inspect callers' tokens must
// be bound to.
const DefaultAudience = "doorman"

// DefaultCacheTTL is how long a review's outcome is reused.
const DefaultCacheTTL = 30 * time.Second

// maxCacheEntries bounds the cache; when it is full, expired entries go,
// and if that is not enough, all of them.
const maxCacheEntries = 10000

// Config configures an Authenticator.
type Config struct {
	// Client creates TokenReviews and SubjectAccessReviews.
	Client kubernetes.Interface
	// Audiences the tokens must be bound to (default ["doorman"]).
	Audiences []string
	// AgentUser is the user name agents authenticate as, e.g.
	// "system:serviceaccount:doorman-system:doorman-nodeagent". Required.
	AgentUser string
	// CacheTTL is how long a review's outcome is reused (default 30 s;
	// negative = no cache).
	CacheTTL time.Duration
	// Now is the clock (default time.Now).
	Now    func() time.Time
	Logger hclog.Logger
}

// Authenticator checks the callers of the control plane's services.
type Authenticator struct {
	client    kubernetes.Interface
	audiences []string
	agentUser string
	ttl       time.Duration
	now       func() time.Time
	log       hclog.Logger

	mu    sync.Mutex
	cache map[cacheKey]cached
}

type cacheKey struct {
	kind  byte // 'a' agent, 'i' inspect
	token [sha256.Size]byte
}

type cached struct {
	node    string // agent: the node the token is bound to
	err     error  // a status error, or nil
	expires time.Time
}

// New returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Client == nil {
		return nil, errors.New("auth: a kubernetes client is required")
	}
	if cfg.AgentUser == "" {
		return nil, errors.New("auth: the agents' user name is required")
	}
	a := &Authenticator{
		client:    cfg.Client,
		audiences: cfg.Audiences,
		agentUser: cfg.AgentUser,
		ttl:       cfg.CacheTTL,
		now:       cfg.Now,
		log:       cfg.Logger,
		cache:     map[cacheKey]cached{},
	}
	if len(a.audiences) == 0 {
		a.audiences = []string{DefaultAudience}
	}
	if a.ttl == 0 {
		a.ttl = DefaultCacheTTL
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	return a, nil
}

// ServiceAccountUser is the user name of a ServiceAccount's tokens.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// ServerOptions are the interceptors that enforce the policy.
func (a *Authenticator) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.unary),
		grpc.ChainStreamInterceptor(a.stream),
	}
}

const (
	agentService   = "/" + "doorman.v1.AgentService" + "/"
	inspectService = "/" + "doorman.v1.InspectService" + "/"
	reflectionV1   = "/grpc.reflection.v1.ServerReflection/"
	reflectionV1a  = "/grpc.reflection.v1alpha.ServerReflection/"
)

func (a *Authenticator) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch {
	case strings.HasPrefix(info.FullMethod, inspectService):
		if err := a.Inspector(ctx, bearer(ctx)); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	default:
		return nil, status.Errorf(codes.PermissionDenied, "%s: no caller may call it", info.FullMethod)
	}
}

func (a *Authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch {
	case strings.HasPrefix(info.FullMethod, reflectionV1), strings.HasPrefix(info.FullMethod, reflectionV1a):
		return handler(srv, ss)
	case strings.HasPrefix(info.FullMethod, agentService):
		node, err := a.Agent(ss.Context(), bearer(ss.Context()))
		if err != nil {
			return err
		}
		return handler(srv, &boundStream{ServerStream: ss, node: node})
	default:
		return status.Errorf(codes.PermissionDenied, "%s: no caller may call it", info.FullMethod)
	}
}

// boundStream refuses a Hello that names another node than the token's.
type boundStream struct {
	grpc.ServerStream
	node  string
	hello bool
}

func (s *boundStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	req, ok := m.(*doormanv1.SyncRequest)
	if !ok {
		return status.Errorf(codes.Internal, "unexpected message %T", m)
	}
	// Only the first message may be a Hello; the server refuses any other.
	if s.hello {
		return nil
	}
	s.hello = true
	if h := req.GetHello(); h != nil && h.GetNodeName() != s.node {
		return status.Errorf(codes.PermissionDenied, "hello for node %q: the token is bound to node %q", h.GetNodeName(), s.node)
	}
	return nil
}

// bearer returns the token of the "authorization: Bearer …" metadata, or "".
func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		scheme, token, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(token)
		}
	}
	return ""
}

// Agent checks an agent's token and returns the node it is bound to.
// Errors are gRPC status errors.
func (a *Authenticator) Agent(ctx context.Context, token string) (string, error) {
	if token == "" {
		return "", status.Error(codes.Unauthenticated, "no bearer token")
	}
	key := cacheKey{kind: 'a', token: sha256.Sum256([]byte(token))}
	if c, ok := a.lookup(key); ok {
		return c.node, c.err
	}
	user, err := a.review(ctx, token)
	if err != nil {
		return "", a.store(key, "", err)
	}
	if user.Username != a.agentUser {
		return "", a.store(key, "", status.Errorf(codes.PermissionDenied, "user %q is not the agents' service account", user.Username))
	}
	nodes := user.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return "", a.store(key, "", status.Error(codes.PermissionDenied, "the token is not bound to a Pod on a node"))
	}
	return nodes[0], a.store(key, nodes[0], nil)
}

// Inspector checks that a token's user may list Services and
// EndpointSlices cluster-wide. Errors are gRPC status errors.
func (a *Authenticator) Inspector(ctx context.Context, token string) error {
	if token == "" {
		return status.Error(codes.Unauthenticated, "no bearer token")
	}
	key := cacheKey{kind: 'i', token: sha256.Sum256([]byte(token))}
	if c, ok := a.lookup(key); ok {
		return c.err
	}
	user, err := a.review(ctx, token)
	if err != nil {
		return a.store(key, "", err)
	}
	for _, res := range []authorizationv1.ResourceAttributes{
		{Verb: "list", Group: "", Resource: "services"},
		{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
	} {
		if err := a.access(ctx, user, res); err != nil {
			return a.store(key, "", err)
		}
	}
	return a.store(key, "", nil)
}

// review runs a TokenReview and returns the authenticated user.
func (a *Authenticator) review(ctx context.Context, token string) (authenticationv1.UserInfo, error) {
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		a.log.Warn("token review failed", "error", err)
		return authenticationv1.UserInfo{}, unavailable{status.Errorf(codes.Unavailable, "token review: %v", err)}
	}
	if !tr.Status.Authenticated {
		a.log.Debug("token refused", "error", tr.Status.Error)
		return authenticationv1.UserInfo{}, status.Error(codes.Unauthenticated, "invalid token")
	}
	if !slices.ContainsFunc(tr.Status.Audiences, func(s string) bool { return slices.Contains(a.audiences, s) }) {
		return authenticationv1.UserInfo{}, status.Errorf(codes.Unauthenticated, "the token is not for audience %s", strings.Join(a.audiences, ","))
	}
	return tr.Status.User, nil
}

// access runs a SubjectAccessReview for a cluster-wide resource attribute.
func (a *Authenticator) access(ctx context.Context, user authenticationv1.UserInfo, res authorizationv1.ResourceAttributes) error {
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			ResourceAttributes: &res,
			User:               user.Username,
			Groups:             user.Groups,
			UID:                user.UID,
			Extra:              extra,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		a.log.Warn("subject access review failed", "error", err)
		return unavailable{status.Errorf(codes.Unavailable, "subject access review: %v", err)}
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		what := res.Resource
		if res.Group != "" {
			what += "." + res.Group
		}
		return status.Errorf(codes.PermissionDenied, "user %q may not %s %s", user.Username, res.Verb, what)
	}
	return nil
}

// unavailable marks an error that must not be cached: the API server did
// not answer, the token may well be good.
type unavailable struct{ error }

func (u unavailable) GRPCStatus() *status.Status { s, _ := status.FromError(u.error); return s }

func (a *Authenticator) lookup(key cacheKey) (cached, bool) {
	if a.ttl < 0 {
		return cached{}, false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[key]
	if !ok {
		return cached{}, false
	}
	if !a.now().Before(c.expires) {
		delete(a.cache, key)
		return cached{}, false
	}
	return c, true
}

// store caches an outcome (unless the API server was unavailable) and
// returns its error.
func (a *Authenticator) store(key cacheKey, node string, err error) error {
	var u unavailable
	if errors.As(err, &u) {
		return u.error
	}
	if a.ttl < 0 {
		return err
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxCacheEntries {
		for k, c := range a.cache {
			if !now.Before(c.expires) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxCacheEntries {
			clear(a.cache)
		}
	}
	a.cache[key] = cached{node: node, err: err, expires: now.Add(a.ttl)}
	return err
}

// String describes the policy for the start-up log.
func (a *Authenticator) String() string {
	return fmt.Sprintf("agents as %s (audiences %s), inspect by users who may list services and endpointslices", a.agentUser, strings.Join(a.audiences, ","))
}
