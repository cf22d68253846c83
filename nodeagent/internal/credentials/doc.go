// Package credentials is what the node agent shows and checks when it
// connects to the control plane:
//
//   - Token: per-RPC credentials carrying the projected ServiceAccount
//     token (audience "doorman", bound to the agent's Pod and so to its
//     node) as "authorization: Bearer …". The file is read again for every
//     stream, since the kubelet rotates it.
//   - Transport: TLS that verifies the control plane's certificate against
//     the CA bundle the control plane publishes, read from a mounted file
//     or from the ConfigMap through the API server (trust material is one
//     of the two things the agent may ask the API server for). The bundle
//     is loaded again when a certificate does not verify, so a rotated CA
//     is picked up without a restart.
//
// DialOptions assembles both from the agent's flags; with Insecure
// (plaintext, for local development) it sends no token at all. It imports gRPC and
// kube (the API server client); it must not import the dataplane, the agent's state or bbolt.
package credentials
