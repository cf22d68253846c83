package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// NodeNameExtra is the key of the user's extra that names the node of the
// Pod a ServiceAccount token is bound to (kube-apiserver 1.30 and later).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// DefaultAudience is the audience agents' and Inspect callers' tokens must
// be bound to.
const DefaultAudience = "doorman"

// Config configures an Authenticator.
type Config struct {
	// Client creates TokenReviews and SubjectAccessReviews. Its own
	// client-side rate limit should be off (rest.Config.QPS < 0): Limits
	// bounds the reviews, and queues them fairly.
	Client kubernetes.Interface
	// Audiences the tokens must be bound to (default ["doorman"]).
	Audiences []string
	// AgentUser is the user name agents authenticate as, e.g.
	// "system:serviceaccount:doorman-system:doorman-nodeagent". Required.
	AgentUser string
	// Limits bound the reviews and the caches; zero fields take the
	// defaults.
	Limits Limits
	// Local, when set, verifies agents' tokens in the control plane, as
	// the API server would, instead of a TokenReview each; tokens it
	// cannot verify, and every token until Start has read the keys and
	// listed the agents' Pods, still get a TokenReview.
	Local *LocalConfig
	// Now is the clock of the caches and of the per-peer budgets (default
	// time.Now).
	Now    func() time.Time
	Logger hclog.Logger
}

// Authenticator checks the callers of the control plane's services.
type Authenticator struct {
	client    kubernetes.Interface
	audiences []string
	agentUser string
	limits    Limits
	now       func() time.Time
	log       hclog.Logger

	local  *local // nil: every agent gets a TokenReview
	cache  *outcomes
	gate   *gate
	peers  *peers
	flight singleflight.Group
}

// Admission is what an agent's token admits: the node it is bound to,
// and when the token expires (zero: not known).
type Admission struct {
	Node    string
	Expires time.Time
	pod     objectRef // the Pod the token is bound to, when known
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
		limits:    cfg.Limits.withDefaults(),
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if len(a.audiences) == 0 {
		a.audiences = []string{DefaultAudience}
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	a.cache = newOutcomes(a.limits, a.now)
	a.gate = newGate(a.limits.ReviewQPS, a.limits.ReviewBurst, a.limits.ReviewTimeout)
	a.peers = newPeers(a.limits.PeerFailureQPS, a.limits.PeerFailureBurst, a.now)
	if cfg.Local != nil {
		l, err := newLocal(*cfg.Local, a.agentUser, a.limits.ReviewTimeout, a.log.Named("local"))
		if err != nil {
			return nil, err
		}
		a.local = l
	}
	return a, nil
}

// Start reads the API server's service-account keys and watches the
// agents' Pods, for the local verification of agents' tokens, until ctx
// is done. Without Config.Local it does nothing.
func (a *Authenticator) Start(ctx context.Context) {
	if a.local != nil {
		a.local.start(ctx)
	}
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

// errTokenExpired and errPodGone are the causes of a stream's context
// ending when the token it was admitted with expires, or when the Pod
// that token is bound to is deleted.
var (
	errTokenExpired = errors.New("token expired")
	errPodGone      = errors.New("pod deleted")
)

func (a *Authenticator) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	switch {
	case strings.HasPrefix(info.FullMethod, reflectionV1), strings.HasPrefix(info.FullMethod, reflectionV1a):
		return handler(srv, ss)
	case strings.HasPrefix(info.FullMethod, agentService):
		adm, err := a.Agent(ss.Context(), bearer(ss.Context()))
		if err != nil {
			return err
		}
		ctx := ss.Context()
		if !adm.Expires.IsZero() {
			// The stream ends when its credentials do; the agent comes
			// back with its rotated token and resumes by digests.
			life := max(adm.Expires.Sub(a.now()), a.limits.MinStreamLife)
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeoutCause(ctx, life, errTokenExpired)
			defer cancel()
		}
		ctx, unbind, err := a.bindToPod(ctx, adm)
		if err != nil {
			return err
		}
		defer unbind()
		err = handler(srv, &boundStream{ServerStream: ss, ctx: ctx, node: adm.Node})
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errTokenExpired):
			a.log.Debug("stream ended: token expired", "node", adm.Node, "expired", adm.Expires)
			return status.Errorf(codes.Unauthenticated, "the token this stream was admitted with expired at %s: reconnect with a fresh token", adm.Expires.UTC().Format(time.RFC3339))
		case errors.Is(cause, errPodGone):
			a.log.Debug("stream ended: pod deleted", "node", adm.Node, "pod", adm.pod.Name)
			return status.Errorf(codes.Unauthenticated, "the Pod %s the token of this stream is bound to was deleted", adm.pod.Name)
		}
		return err
	default:
		return status.Errorf(codes.PermissionDenied, "%s: no caller may call it", info.FullMethod)
	}
}

// bindToPod ends the stream's context when the Pod the agent's token is
// bound to is deleted, as its token then is revoked; unbind stops
// watching. Nothing to watch when the Pod is not known, or the agents'
// Pods are not listed (TokenReviews only).
func (a *Authenticator) bindToPod(ctx context.Context, adm Admission) (_ context.Context, unbind func(), _ error) {
	if adm.pod.UID == "" || a.local == nil || !a.local.pods.synced() {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := a.local.pods.watch(adm.pod.UID, func() { cancel(errPodGone) })
	unbind = func() {
		stop()
		cancel(nil)
	}
	// Checked once watching, so that a deletion in between is not missed.
	if err := a.local.pods.check(adm.pod, adm.Node); err != nil {
		unbind()
		return nil, nil, status.Errorf(codes.Unauthenticated, "invalid token: %v", err)
	}
	return ctx, unbind, nil
}

// boundStream refuses a Hello that names another node than the token's,
// and ends with the token.
type boundStream struct {
	grpc.ServerStream
	ctx   context.Context
	node  string
	hello bool
}

func (s *boundStream) Context() context.Context { return s.ctx }

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
func (a *Authenticator) Agent(ctx context.Context, token string) (Admission, error) {
	if token == "" {
		return Admission{}, status.Error(codes.Unauthenticated, "no bearer token")
	}
	out := a.check(ctx, kindAgent, token, a.admitAgent)
	if out.err == nil && out.pod.UID != "" && a.local != nil && a.local.pods.synced() {
		// The admission may be cached from before the Pod was deleted.
		if err := a.local.pods.check(out.pod, out.node); err != nil {
			return Admission{}, status.Errorf(codes.Unauthenticated, "invalid token: %v", err)
		}
	}
	return Admission{Node: out.node, Expires: out.expires, pod: out.pod}, out.err
}

// Inspector checks that a token's user may list Services and
// EndpointSlices cluster-wide. Errors are gRPC status errors.
func (a *Authenticator) Inspector(ctx context.Context, token string) error {
	if token == "" {
		return status.Error(codes.Unauthenticated, "no bearer token")
	}
	return a.check(ctx, kindInspect, token, a.admitInspector).err
}

// What a token is checked for; outcomes are cached apart.
const (
	kindAgent   = 'a'
	kindInspect = 'i'
)

// check returns a token's cached outcome, or decides it: at most one
// review per token at a time (callers presenting the same token share
// it), within the caller's peer's budget of failures.
func (a *Authenticator) check(ctx context.Context, kind byte, token string, decide func(context.Context, priority, string) outcome) outcome {
	sum := sha256.Sum256([]byte(token))
	key := string(kind) + string(sum[:])
	if out, ok := a.cache.get(key); ok {
		return out
	}
	addr := peerAddr(ctx)
	prio, ok := a.peers.begin(addr)
	if !ok {
		a.log.Debug("refused without review: peer over its failure budget", "peer", addr)
		return outcome{err: status.Errorf(codes.ResourceExhausted, "too many failed authentications from %s: retry later", addr), transient: true}
	}
	ch := a.flight.DoChan(key, func() (any, error) {
		// Shared by every caller of this token: no one caller's
		// cancellation ends it; the review's own deadlines do.
		out := decide(context.WithoutCancel(ctx), prio, token)
		a.cache.put(key, out)
		return out, nil
	})
	select {
	case r := <-ch:
		out := r.Val.(outcome)
		a.peers.end(addr, out.refused())
		return out
	case <-ctx.Done():
		// The review goes on: it stays in flight for the peer, and a
		// failure is charged to it all the same, or hanging up would be
		// a way around the budget.
		go func() {
			r := <-ch
			a.peers.end(addr, r.Val.(outcome).refused())
		}()
		return outcome{err: status.FromContextError(ctx.Err()).Err(), transient: true}
	}
}

// admitAgent verifies an agent's token locally when it can, else with a
// TokenReview.
func (a *Authenticator) admitAgent(ctx context.Context, prio priority, token string) outcome {
	if a.local != nil {
		if out, ok := a.local.admit(ctx, token, a.audiences, a.agentUser, a.now()); ok {
			return out
		}
	}
	user, out := a.review(ctx, prio, token)
	if out.err != nil {
		return out
	}
	if user.Username != a.agentUser {
		return outcome{err: status.Errorf(codes.PermissionDenied, "user %q is not the agents' service account", user.Username)}
	}
	nodes := user.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return outcome{err: status.Error(codes.PermissionDenied, "the token is not bound to a Pod on a node")}
	}
	return outcome{node: nodes[0], expires: tokenExpiry(token), pod: reviewedPod(user)}
}

// The user's extras that name the Pod a ServiceAccount token is bound to.
const (
	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// reviewedPod is the Pod a reviewed token is bound to, or none.
func reviewedPod(user authenticationv1.UserInfo) objectRef {
	names, uids := user.Extra[podNameExtra], user.Extra[podUIDExtra]
	if len(names) != 1 || len(uids) != 1 || names[0] == "" || uids[0] == "" {
		return objectRef{}
	}
	return objectRef{Name: names[0], UID: types.UID(uids[0])}
}

func (a *Authenticator) admitInspector(ctx context.Context, prio priority, token string) outcome {
	user, out := a.review(ctx, prio, token)
	if out.err != nil {
		return out
	}
	for _, res := range []authorizationv1.ResourceAttributes{
		{Verb: "list", Group: "", Resource: "services"},
		{Verb: "list", Group: "discovery.k8s.io", Resource: "endpointslices"},
	} {
		if out := a.access(ctx, prio, user, res); out.err != nil {
			return out
		}
	}
	return outcome{expires: tokenExpiry(token)}
}

// review runs a TokenReview, in its turn, and returns the authenticated
// user or the refusal.
func (a *Authenticator) review(ctx context.Context, prio priority, token string) (authenticationv1.UserInfo, outcome) {
	if err := a.gate.wait(ctx, prio); err != nil {
		a.log.Debug("token review not sent", "error", err)
		return authenticationv1.UserInfo{}, outcome{err: status.Errorf(codes.Unavailable, "token review: %v", err), transient: true}
	}
	ctx, cancel := context.WithTimeout(ctx, a.limits.ReviewTimeout)
	defer cancel()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		a.log.Warn("token review failed", "error", err)
		return authenticationv1.UserInfo{}, outcome{err: status.Errorf(codes.Unavailable, "token review: %v", err), transient: true}
	}
	if !tr.Status.Authenticated {
		a.log.Debug("token refused", "error", tr.Status.Error)
		return authenticationv1.UserInfo{}, outcome{err: status.Error(codes.Unauthenticated, "invalid token")}
	}
	if !slices.ContainsFunc(tr.Status.Audiences, func(s string) bool { return slices.Contains(a.audiences, s) }) {
		return authenticationv1.UserInfo{}, outcome{err: status.Errorf(codes.Unauthenticated, "the token is not for audience %s", strings.Join(a.audiences, ","))}
	}
	return tr.Status.User, outcome{}
}

// access runs a SubjectAccessReview for a cluster-wide resource
// attribute, in its turn.
func (a *Authenticator) access(ctx context.Context, prio priority, user authenticationv1.UserInfo, res authorizationv1.ResourceAttributes) outcome {
	if err := a.gate.wait(ctx, prio); err != nil {
		a.log.Debug("subject access review not sent", "error", err)
		return outcome{err: status.Errorf(codes.Unavailable, "subject access review: %v", err), transient: true}
	}
	ctx, cancel := context.WithTimeout(ctx, a.limits.ReviewTimeout)
	defer cancel()
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
		return outcome{err: status.Errorf(codes.Unavailable, "subject access review: %v", err), transient: true}
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		what := res.Resource
		if res.Group != "" {
			what += "." + res.Group
		}
		return outcome{err: status.Errorf(codes.PermissionDenied, "user %q may not %s %s", user.Username, res.Verb, what)}
	}
	return outcome{}
}

// Stats are the authenticator's counters, for tests and logs.
type Stats struct {
	// Admitted and Refused are the entries in the two caches.
	Admitted, Refused int
	// AdmittedEvicted counts unexpired admissions pushed out of their
	// cache by newer admissions (never by refusals).
	AdmittedEvicted uint64
	// SignaturesChecked counts the tokens verified locally.
	SignaturesChecked uint64
}

// Stats returns the current counters.
func (a *Authenticator) Stats() Stats {
	s := a.cache.stats()
	if a.local != nil {
		s.SignaturesChecked = a.local.checked.Load()
	}
	return s
}

// String describes the policy for the start-up log.
func (a *Authenticator) String() string {
	l := a.limits
	how := "tokenreview"
	if a.local != nil {
		how = "verified locally (tokenreview when they cannot be)"
	}
	return fmt.Sprintf("agents as %s (audiences %s) %s, inspect by users who may list services and endpointslices; reviews at %g/s (burst %d, timeout %s), outcomes cached %s (refusals %s), %g failed reviews/s per peer (burst %d)",
		a.agentUser, strings.Join(a.audiences, ","), how, l.ReviewQPS, l.ReviewBurst, l.ReviewTimeout, l.SuccessTTL, l.FailureTTL, l.PeerFailureQPS, l.PeerFailureBurst)
}
