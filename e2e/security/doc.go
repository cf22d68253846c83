// Package security is the e2e suite of doorman's gRPC security (build tag
// e2e): on a netns cluster whose control plane serves TLS and checks
// tokens with the real kube-apiserver's TokenReview and
// SubjectAccessReview, and whose agents show tokens bound to a Pod on
// their node (the TokenRequest API, as the kubelet projects them).
//
// Each refusal is checked for its gRPC code — no token, a token of a
// deleted Pod, another audience, another node, another ServiceAccount, a
// user without RBAC — and for what it must not leak; a valid agent token
// gets its own node's view and nothing of another node's.
//
// It needs root, like the rest of e2e; it may import e2e/cluster and the
// wire API, not doorman's internals.
package security
