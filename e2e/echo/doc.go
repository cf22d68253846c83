// Package echo is the server every simulated Pod runs and the client the
// e2e suite and the demo use to talk to it.
//
// The protocol is the subset of agnhost's netexec that the suite needs, so
// the same tests run against a kind cluster whose Pods run agnhost:
//
//   - HTTP (every TCP container port): GET /hostname answers the Pod's name,
//     GET /clientip the client address the server saw (ip:port),
//     GET /healthz "ok".
//   - UDP (every UDP container port): a datagram "hostname" is answered with
//     the Pod's name, "clientip" with the client address, "echo <text>" with
//     <text>.
//
// It imports nothing from doorman.
package echo
