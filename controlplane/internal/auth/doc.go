// Package auth decides who may call the control plane's gRPC services.
//
// Agents (AgentService) present a projected ServiceAccount token bound to
// the audience "doorman" and to their Pod, so to the node the Pod runs on.
// The token is verified here, as the API server would verify it: a JWT
// signed (RS256 or ES256) by one of the API server's service-account
// keys, read from its issuer discovery (/.well-known/openid-configuration,
// /openid/v1/jwks) through the API client, read again every minute and on
// a key ID not known (at most once per 10 s); the discovery's issuer, the
// audience, exp/nbf/iat with a minute's leeway, the subject (the agents'
// ServiceAccount, which must still exist with the token's UID), and the
// Pod and node of the "kubernetes.io" claims: the Pod must exist with the
// token's UID on that node, not being deleted (an informer on the agents'
// namespace). A token without a node claim is not bound to a node and is
// refused. Whatever is not such a token (another issuer or key, another
// ServiceAccount, not a JWT), and every token while the keys cannot be
// read or the Pods are not listed, is verified with a TokenReview; the
// user must be the agents' ServiceAccount and the node is the extra
// "authentication.kubernetes.io/node-name". Either way the stream is
// bound to the token's node: the Hello must name it. Inspect callers
// present a token of the same audience whose user may list Services and
// EndpointSlices cluster-wide (TokenReview and SubjectAccessReview).
// Server reflection is open: it describes the API, not the cluster.
//
// No client can starve admission. Outcomes are cached, keyed by the
// SHA-256 of the token, in two bounded LRU caches with their own TTLs:
// admissions (30 s, never past the token's JWT exp) and refusals (10 s),
// so that invalid tokens, however many, never push an admission out.
// Callers presenting the same token at once share one review
// (singleflight). Reviews go to the API server at a bounded rate (50/s,
// burst 100), each with a deadline (10 s to get its turn, 10 s to be
// answered); when they must wait, callers from peers with no recent
// failure go first, and a review that would wait too long is refused at
// once (Unavailable: the agent retries). Each remote address has a budget
// of failed reviews (10, then one per 5 s); out of it, its tokens are
// refused without a review (ResourceExhausted) unless cached. Local
// verification sits behind the same caches, singleflight and budgets: a
// token refused locally spends its peer's budget as a failed review
// does, so signature checks, however many the tokens, are bounded per
// peer.
//
// An agent's stream ends when its token expires (the JWT's exp, read
// once the token is verified), and when the Pod its token is bound to is
// deleted or marked for deletion (the token is then revoked):
// Unauthenticated, and the agent comes back with its rotated token and
// resumes by digests.
//
// It is a gRPC layer (interceptors) and maps its errors to status codes:
// no or invalid token → Unauthenticated, valid token without the right →
// PermissionDenied, the API server unreachable → Unavailable. It must not
// import the hub, the model or anything that holds views.
package auth
