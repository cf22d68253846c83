// Package echo is the server every e2e Pod runs (simulated Pods on the
// netns cluster, doorman's echo image on kind: cmd/echo) and the client
// the e2e suite and the demo use to talk to it.
//
// The protocol is a subset of agnhost netexec's:
//
//   - HTTP (every TCP container port): GET /hostname answers the Pod's name,
//     GET /clientip the client address the server saw (ip:port),
//     GET /healthz "ok", GET /session takes the connection over for one
//     request per line (a long-lived flow).
//   - UDP (every UDP container port): a datagram "hostname" is answered with
//     the Pod's name, "clientip" with the client address, "echo <text>" with
//     <text>.
//
// Control is the endpoint that lets a test act from inside a Pod it cannot
// enter (send requests, hold flows open, flip readiness, forward a unary
// gRPC call from a node's host network).
//
// It imports nothing from doorman.
package echo
