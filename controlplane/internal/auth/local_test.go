package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/doorman-proxy/doorman/internal/kubeconfig"
)

const (
	testIssuer    = "https://kubernetes.default.svc.cluster.local"
	testNamespace = "doorman-system"
)

// signingKey is a private key and the ID the API server would publish
// its public half under.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
}

func (k signingKey) public() jose.JSONWebKey {
	var pub any
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		pub = &p.PublicKey
	case *ecdsa.PrivateKey:
		pub = &p.PublicKey
	}
	return jose.JSONWebKey{Key: pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// sign makes a compact JWS of claims with the key, kid in its header.
func (k signingKey) sign(t testing.TB, claims any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The test's keys: rsaKey and ecKey are the API server's; otherKey is
// not, and claims rsaKey's ID.
var rsaKey, ecKey, otherKey = func() (signingKey, signingKey, signingKey) {
	r1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	r2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return signingKey{kid: "rsa-1", alg: jose.RS256, priv: r1}, signingKey{kid: "ec-1", alg: jose.ES256, priv: e}, signingKey{kid: "rsa-1", alg: jose.RS256, priv: r2}
}()

// issuerServer is an API server's issuer discovery and JWKS.
type issuerServer struct {
	srv   *httptest.Server
	reads atomic.Int32 // JWKS reads
	mu    sync.Mutex
	keys  []jose.JSONWebKey
	code  int // non-zero: every request fails with it
}

func newIssuerServer(t testing.TB, keys ...signingKey) *issuerServer {
	s := &issuerServer{}
	for _, k := range keys {
		s.keys = append(s.keys, k.public())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+discoveryPath, func(w http.ResponseWriter, r *http.Request) {
		if s.fail(w) || !acceptable(w, r, "application/json") {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": testIssuer, "jwks_uri": testIssuer + jwksPath, "id_token_signing_alg_values_supported": []string{"RS256", "ES256"}})
	})
	mux.HandleFunc("GET "+jwksPath, func(w http.ResponseWriter, r *http.Request) {
		if s.fail(w) || !acceptable(w, r, "application/jwk-set+json") {
			return
		}
		s.reads.Add(1)
		s.mu.Lock()
		set := jose.JSONWebKeySet{Keys: s.keys}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	})
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// acceptable answers 406 Not Acceptable, as the API server does for these
// paths, unless the request's Accept header admits produces, and reports
// whether it does.
func acceptable(w http.ResponseWriter, r *http.Request, produces string) bool {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return true
	}
	major, _, _ := strings.Cut(produces, "/")
	for _, a := range strings.Split(accept, ",") {
		a, _, _ = strings.Cut(strings.TrimSpace(a), ";")
		if a == produces || a == "*/*" || a == major+"/*" {
			return true
		}
	}
	http.Error(w, "406: Not Acceptable", http.StatusNotAcceptable)
	return false
}

func (s *issuerServer) fail(w http.ResponseWriter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.code != 0 {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`, s.code)
		return true
	}
	return false
}

func (s *issuerServer) publish(k signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, k.public())
}

// restClient is the REST client the control plane reads the keys with.
func (s *issuerServer) restClient(t testing.TB) rest.Interface {
	cfg := &rest.Config{Host: s.srv.URL}
	kubeconfig.UseProtobuf(cfg) // as both binaries configure their clients
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.Discovery().RESTClient()
}

// agentPod is the Pod of node's agent.
func agentPod(node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "agent-" + node, UID: types.UID("uid-" + node)},
		Spec:       corev1.PodSpec{NodeName: node},
	}
}

// claimsFor are the claims of a token bound to node's agent Pod, valid
// for an hour from now.
func claimsFor(node string, now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"aud": []string{"doorman"},
		"sub": agentUser,
		"exp": now.Add(time.Hour).Unix(),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      testNamespace,
			"pod":            map[string]any{"name": "agent-" + node, "uid": "uid-" + node},
			"node":           map[string]any{"name": node, "uid": "node-uid-" + node},
			"serviceaccount": map[string]any{"name": "doorman-nodeagent", "uid": "sa-uid"},
		},
	}
}

// localFixture is an Authenticator verifying locally against an issuer
// server, with a fake API server for the reviews and the Pods.
type localFixture struct {
	api    *fakeAPI
	issuer *issuerServer
	client *fake.Clientset
	auth   *Authenticator
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newLocalFixture(t testing.TB, issuer *issuerServer, lc LocalConfig, l Limits, pods ...*corev1.Pod) *localFixture {
	t.Helper()
	fx := &localFixture{api: &fakeAPI{}, issuer: issuer, logs: &syncBuffer{}}
	fx.client = fx.api.client()
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: testNamespace, Name: "doorman-nodeagent", UID: "sa-uid"}}
	if err := fx.client.Tracker().Add(account); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if err := fx.client.Tracker().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	lc.Keys, lc.Pods = issuer.restClient(t), fx.client
	a, err := New(Config{
		Client: fx.client, AgentUser: agentUser, Limits: l, Local: &lc,
		Logger: hclog.New(&hclog.LoggerOptions{Output: fx.logs, Level: hclog.Debug}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a.Start(ctx)
	fx.auth = a
	if issuer.code == 0 {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if !a.local.usable(wctx) {
			t.Fatal("local verification not usable after 10 s")
		}
	}
	return fx
}

// with returns claims changed by change.
func with(claims map[string]any, change func(map[string]any)) map[string]any {
	change(claims)
	return claims
}

func k8sClaims(c map[string]any) map[string]any { return c["kubernetes.io"].(map[string]any) }

func TestLocalAgent(t *testing.T) {
	now := time.Now()
	valid := claimsFor("n1", now)
	deleting := agentPod("n3")
	deleting.DeletionTimestamp = &metav1.Time{Time: now}
	deleting.Finalizers = []string{"example.com/hold"}
	other := agentPod("n4")
	other.UID = "uid-recreated"
	moved := agentPod("n5")
	moved.Spec.NodeName = "n6"
	pods := []*corev1.Pod{agentPod("n1"), agentPod("n2"), deleting, other, moved}

	noneToken := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"rsa-1","typ":"JWT"}`))
		p, _ := json.Marshal(valid)
		return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}
	tamper := func(token string) string {
		parts := strings.Split(token, ".")
		p, _ := json.Marshal(claimsFor("n2", now))
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
	}
	hs256 := func() string {
		// The RSA public key used as an HMAC secret.
		pub, _ := json.Marshal(rsaKey.public())
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: pub, KeyID: "rsa-1"}}, nil)
		p, _ := json.Marshal(valid)
		obj, _ := signer.Sign(p)
		s, _ := obj.CompactSerialize()
		return s
	}
	unknownKid := otherKey
	unknownKid.kid = "rsa-unpublished"

	tests := []struct {
		name        string
		token       string
		wantCode    codes.Code
		wantNode    string
		wantReviews int32
	}{
		{name: "rs256", token: rsaKey.sign(t, valid), wantNode: "n1"},
		{name: "es256", token: ecKey.sign(t, claimsFor("n2", now)), wantNode: "n2"},
		{name: "expired within the leeway", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["exp"] = now.Add(-tokenLeeway / 2).Unix() })), wantNode: "n1"},
		{name: "bad signature", token: tamper(rsaKey.sign(t, valid)), wantCode: codes.Unauthenticated},
		{name: "another key, same kid", token: otherKey.sign(t, valid), wantCode: codes.Unauthenticated},
		{name: "another key, unknown kid", token: unknownKid.sign(t, valid), wantCode: codes.Unauthenticated, wantReviews: 1},
		{name: "alg none", token: noneToken(), wantCode: codes.Unauthenticated, wantReviews: 1},
		{name: "alg HS256 with the public key", token: hs256(), wantCode: codes.Unauthenticated, wantReviews: 1},
		{name: "ES256 header on the RSA key", token: signingKey{kid: "rsa-1", alg: jose.ES256, priv: ecKey.priv}.sign(t, valid), wantCode: codes.Unauthenticated},
		{name: "another issuer", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["iss"] = "https://elsewhere" })), wantCode: codes.Unauthenticated, wantReviews: 1},
		{name: "another audience", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["aud"] = []string{"https://kubernetes.default.svc"} })), wantCode: codes.Unauthenticated},
		{name: "expired", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["exp"] = now.Add(-2 * tokenLeeway).Unix() })), wantCode: codes.Unauthenticated},
		{name: "no expiry", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { delete(c, "exp") })), wantCode: codes.Unauthenticated},
		{name: "not yet valid", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["nbf"] = now.Add(2 * tokenLeeway).Unix() })), wantCode: codes.Unauthenticated},
		{name: "issued in the future", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["iat"] = now.Add(2 * tokenLeeway).Unix() })), wantCode: codes.Unauthenticated},
		{name: "another service account: reviewed", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { c["sub"] = ServiceAccountUser("default", "web") })), wantCode: codes.Unauthenticated, wantReviews: 1},
		{name: "service account uid differs", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) {
			k8sClaims(c)["serviceaccount"] = map[string]any{"name": "doorman-nodeagent", "uid": "sa-uid-before"}
		})), wantCode: codes.Unauthenticated},
		{name: "no pod claim", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { delete(k8sClaims(c), "pod") })), wantCode: codes.PermissionDenied},
		{name: "no node claim", token: rsaKey.sign(t, with(claimsFor("n1", now), func(c map[string]any) { delete(k8sClaims(c), "node") })), wantCode: codes.PermissionDenied},
		{name: "pod missing", token: rsaKey.sign(t, claimsFor("n9", now)), wantCode: codes.Unauthenticated},
		{name: "pod uid differs", token: rsaKey.sign(t, claimsFor("n4", now)), wantCode: codes.Unauthenticated},
		{name: "pod on another node", token: rsaKey.sign(t, claimsFor("n5", now)), wantCode: codes.Unauthenticated},
		{name: "pod being deleted", token: rsaKey.sign(t, claimsFor("n3", now)), wantCode: codes.Unauthenticated},
		{name: "not a jwt: reviewed", token: "agent:n7", wantNode: "n7", wantReviews: 1},
	}
	issuer := newIssuerServer(t, rsaKey, ecKey)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newLocalFixture(t, issuer, LocalConfig{}, Limits{}, pods...)
			adm, err := fx.auth.Agent(context.Background(), tt.token)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if adm.Node != tt.wantNode {
				t.Errorf("node = %q, want %q", adm.Node, tt.wantNode)
			}
			if got := fx.api.reviews.Load(); got != tt.wantReviews {
				t.Errorf("%d token reviews, want %d", got, tt.wantReviews)
			}
		})
	}
}

// TestLocalKeyRefresh: a token signed with a key published after the
// keys were read has them read again, and is admitted without a review;
// tokens naming made-up key IDs have them read at most once per
// KeysMinRefresh, however many, and get a review each as before.
func TestLocalKeyRefresh(t *testing.T) {
	now := time.Now()
	issuer := newIssuerServer(t, rsaKey)
	fx := newLocalFixture(t, issuer, LocalConfig{KeysMinRefresh: time.Hour, KeysRefresh: time.Hour}, Limits{PeerFailureBurst: -1}, agentPod("n1"), agentPod("n2"))
	ctx := context.Background()
	if _, err := fx.auth.Agent(ctx, rsaKey.sign(t, claimsFor("n1", now))); err != nil {
		t.Fatal(err)
	}
	if got := issuer.reads.Load(); got != 1 {
		t.Fatalf("%d key reads at start, want 1", got)
	}

	issuer.publish(ecKey)
	adm, err := fx.auth.Agent(ctx, ecKey.sign(t, claimsFor("n2", now)))
	if err != nil || adm.Node != "n2" {
		t.Fatalf("token of the new key: %+v, %v", adm, err)
	}
	if got := issuer.reads.Load(); got != 2 {
		t.Errorf("%d key reads after a new key ID, want 2", got)
	}
	if got := fx.api.reviews.Load(); got != 0 {
		t.Errorf("%d token reviews, want 0", got)
	}

	const junk = 200
	var wg sync.WaitGroup
	for i := range junk {
		k := otherKey
		k.kid = "made-up-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		token := k.sign(t, claimsFor("n1", now))
		wg.Go(func() {
			if _, err := fx.auth.Agent(ctx, token); status.Code(err) != codes.Unauthenticated {
				t.Errorf("token with kid %s: %v, want Unauthenticated", k.kid, err)
			}
		})
	}
	wg.Wait()
	if got := issuer.reads.Load(); got != 2 {
		t.Errorf("%d key reads after %d made-up key IDs within KeysMinRefresh, want still 2", got, junk)
	}
	if got := fx.api.reviews.Load(); got != junk {
		t.Errorf("%d token reviews for %d tokens of unknown keys, want one each", got, junk)
	}
}

// TestLocalKeyRefreshRate: with a short KeysMinRefresh, made-up key IDs
// have the keys read again, no more than once per KeysMinRefresh.
func TestLocalKeyRefreshRate(t *testing.T) {
	const minRefresh = 50 * time.Millisecond
	now := time.Now()
	issuer := newIssuerServer(t, rsaKey)
	fx := newLocalFixture(t, issuer, LocalConfig{KeysMinRefresh: minRefresh, KeysRefresh: time.Hour}, Limits{PeerFailureBurst: -1, FailureTTL: -1})
	k := otherKey
	k.kid = "made-up"
	token := k.sign(t, claimsFor("n1", now))
	start := time.Now()
	for time.Since(start) < 10*minRefresh {
		_, _ = fx.auth.Agent(context.Background(), token)
	}
	elapsed := time.Since(start)
	reads := issuer.reads.Load() - 1
	if bound := int32(elapsed/minRefresh) + 1; reads > bound || reads < 2 {
		t.Errorf("%d key reads for unknown key IDs in %s, want 2 to %d (once per %s)", reads, elapsed, bound, minRefresh)
	}
}

// TestLocalFallback: when the keys cannot be read (no issuer discovery,
// no RBAC), agents are admitted by TokenReview, and the log says so once.
func TestLocalFallback(t *testing.T) {
	now := time.Now()
	issuer := newIssuerServer(t, rsaKey)
	issuer.code = http.StatusForbidden
	fx := newLocalFixture(t, issuer, LocalConfig{KeysRefresh: 10 * time.Millisecond}, Limits{}, agentPod("n1"))
	claims := claimsFor("n1", now)
	claims["node"] = "n1" // the fake API server admits it
	adm, err := fx.auth.Agent(context.Background(), rsaKey.sign(t, claims))
	if err != nil || adm.Node != "n1" {
		t.Fatalf("admitted as %+v, %v", adm, err)
	}
	if got := fx.api.reviews.Load(); got != 1 {
		t.Errorf("%d token reviews, want 1", got)
	}
	time.Sleep(100 * time.Millisecond) // several failed reads
	if n := strings.Count(fx.logs.String(), "local token verification off"); n != 1 {
		t.Errorf("the fallback logged %d times, want once:\n%s", n, fx.logs.String())
	}

	// Once the keys can be read, agents are verified locally.
	issuer.mu.Lock()
	issuer.code = 0
	issuer.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for !fx.auth.local.keys.loaded() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := fx.auth.Agent(context.Background(), rsaKey.sign(t, claimsFor("n1", now))); err != nil {
		t.Fatal(err)
	}
	if got := fx.api.reviews.Load(); got != 1 {
		t.Errorf("%d token reviews once the keys are read, want still 1", got)
	}
}

// TestLocalServiceAccountDeletion: once the agents' ServiceAccount is
// deleted, its tokens are refused.
func TestLocalServiceAccountDeletion(t *testing.T) {
	fx := newLocalFixture(t, newIssuerServer(t, rsaKey), LocalConfig{}, Limits{SuccessTTL: -1}, agentPod("n1"))
	token := rsaKey.sign(t, claimsFor("n1", time.Now()))
	if _, err := fx.auth.Agent(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if err := fx.client.CoreV1().ServiceAccounts(testNamespace).Delete(context.Background(), "doorman-nodeagent", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(fx.auth.local.pods.accounts.GetStore().ListKeys()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := fx.auth.Agent(context.Background(), token); status.Code(err) != codes.Unauthenticated {
		t.Errorf("token of a deleted service account: %v, want Unauthenticated", err)
	}
	if got := fx.api.reviews.Load(); got != 0 {
		t.Errorf("%d token reviews, want 0", got)
	}
}

// TestLocalPodDeletion: deleting the Pod a token is bound to ends the
// streams admitted with it, and refuses the token after, cached or not.
// A token admitted by a TokenReview whose user names the Pod is bound to
// it the same way.
func TestLocalPodDeletion(t *testing.T) {
	now := time.Now()
	issuer := newIssuerServer(t, rsaKey)
	for _, how := range []string{"deleted", "marked for deletion", "reviewed, deleted"} {
		t.Run(how, func(t *testing.T) {
			fx := newLocalFixture(t, issuer, LocalConfig{}, Limits{}, agentPod("n1"))
			token := rsaKey.sign(t, claimsFor("n1", now))
			if strings.HasPrefix(how, "reviewed") {
				token = "opaque-n1"
				fx.client.PrependReactor("create", "tokenreviews", func(action k8stesting.Action) (bool, runtime.Object, error) {
					tr := action.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview).DeepCopy()
					tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: []string{"doorman"}, User: authenticationv1.UserInfo{
						Username: agentUser,
						Extra:    map[string]authenticationv1.ExtraValue{NodeNameExtra: {"n1"}, podNameExtra: {"agent-n1"}, podUIDExtra: {"uid-n1"}},
					}}
					return true, tr, nil
				})
			}
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
			ss := &fakeServerStream{ctx: ctx}
			running := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- fx.auth.stream(nil, ss, &grpc.StreamServerInfo{FullMethod: agentService + "Sync"}, func(_ any, s grpc.ServerStream) error {
					close(running)
					<-s.Context().Done()
					return status.FromContextError(s.Context().Err()).Err()
				})
			}()
			select {
			case <-running:
			case err := <-done:
				t.Fatalf("stream refused: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("stream not admitted")
			}
			pods := fx.client.CoreV1().Pods(testNamespace)
			if strings.HasSuffix(how, "deleted") {
				if err := pods.Delete(context.Background(), "agent-n1", metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				p := agentPod("n1")
				p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
				if _, err := pods.Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "deleted") {
					t.Errorf("stream ended with %v, want Unauthenticated: pod deleted", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the stream did not end when its Pod was deleted")
			}
			if _, err := fx.auth.Agent(context.Background(), token); status.Code(err) != codes.Unauthenticated {
				t.Errorf("token of the deleted Pod, admission cached: %v, want Unauthenticated", err)
			}
		})
	}
}

// FuzzLocalToken presents any token to an authenticator whose API server
// is down: whatever the token, nothing panics, and a token is admitted
// only if one of the API server's keys signed it, for the agents'
// service account, bound to a Pod that exists on the node admitted.
func FuzzLocalToken(f *testing.F) {
	now := time.Now()
	issuer := newIssuerServer(f, rsaKey, ecKey)
	fx := newLocalFixture(f, issuer, LocalConfig{KeysMinRefresh: time.Hour}, Limits{PeerFailureBurst: -1, ReviewQPS: -1}, agentPod("n1"), agentPod("n2"))
	fx.api.down.Store(true)
	valid := rsaKey.sign(f, claimsFor("n1", now))
	f.Add(valid)
	f.Add(ecKey.sign(f, claimsFor("n2", now)))
	f.Add(otherKey.sign(f, claimsFor("n1", now)))
	f.Add(valid[:len(valid)-3])
	f.Add(strings.Replace(valid, ".", "..", 1))
	f.Add("eyJhbGciOiJub25lIn0." + strings.Split(valid, ".")[1] + ".")
	f.Add("agent:n1")
	f.Fuzz(func(t *testing.T, token string) {
		adm, err := fx.auth.Agent(context.Background(), token)
		if err != nil {
			return
		}
		var claims serviceAccountClaims
		verified := false
		for _, k := range []signingKey{rsaKey, ecKey} {
			tok, perr := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{k.alg})
			if perr == nil && tok.Claims(k.public().Key, &claims) == nil {
				verified = true
			}
		}
		if !verified {
			t.Fatalf("token %q admitted (%+v) but no key of the API server signed it", token, adm)
		}
		if claims.Subject != agentUser || claims.Kubernetes == nil || claims.Kubernetes.Node == nil || claims.Kubernetes.Node.Name != adm.Node {
			t.Fatalf("token %q admitted for node %q with claims %+v", token, adm.Node, claims)
		}
		if err := fx.auth.local.pods.check(*claims.Kubernetes.Pod, adm.Node); err != nil {
			t.Fatalf("token %q admitted: %v", token, err)
		}
	})
}

// BenchmarkLocalVerify is the CPU one agent's admission costs, past the
// caches: parsing, the signature check, the claims and the Pod.
func BenchmarkLocalVerify(b *testing.B) {
	fx := newLocalFixture(b, newIssuerServer(b, rsaKey, ecKey), LocalConfig{}, Limits{}, agentPod("n1"))
	for _, k := range []signingKey{rsaKey, ecKey} {
		token := k.sign(b, claimsFor("n1", time.Now()))
		b.Run(string(k.alg), func(b *testing.B) {
			for b.Loop() {
				if out, ok := fx.auth.local.admit(context.Background(), token, []string{"doorman"}, agentUser, time.Now()); !ok || out.err != nil {
					b.Fatalf("refused: %v", out.err)
				}
			}
		})
	}
}
