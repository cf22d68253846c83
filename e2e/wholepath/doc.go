// Package wholepath tests doorman's whole path in one process: a control
// plane fed by client-go's fake clientset streams over a real gRPC
// connection to a node agent that programs nftables in a throw-away
// network namespace, and traffic from a client namespace reaches server
// namespaces through it. The local-cluster suite (e2e/suite) does the same
// on real Kubernetes components; this test needs only root.
package wholepath
