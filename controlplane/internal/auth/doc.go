// Package auth decides who may call the control plane's gRPC services.
//
// Agents (AgentService) present a projected ServiceAccount token bound to
// the audience "doorman" and to their Pod, so to the node the Pod runs on.
// The token is verified with a TokenReview; the user must be the agents'
// ServiceAccount, and the stream is bound to the node named in the token's
// extra "authentication.kubernetes.io/node-name": the Hello must name that
// node. Inspect callers present a token of the same audience whose user may
// list Services and EndpointSlices cluster-wide (SubjectAccessReview).
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
// refused without a review (ResourceExhausted) unless cached.
//
// An agent's stream ends when its token expires (the JWT's exp, read
// after the API server verified the token): Unauthenticated, and the
// agent comes back with its rotated token and resumes by digests.
//
// It is a gRPC layer (interceptors) and maps its errors to status codes:
// no or invalid token → Unauthenticated, valid token without the right →
// PermissionDenied, the API server unreachable → Unavailable. It must not
// import the hub, the model or anything that holds views.
package auth
