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
// Results are cached for a short while, keyed by the SHA-256 of the token,
// so a reconnect storm costs one review per distinct token.
//
// It is a gRPC layer (interceptors) and maps its errors to status codes:
// no or invalid token → Unauthenticated, valid token without the right →
// PermissionDenied, the API server unreachable → Unavailable. It must not
// import the hub, the model or anything that holds views.
package auth
