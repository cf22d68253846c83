// Package certs gives the control plane its TLS identity from Kubernetes
// objects it manages itself, so agents can trust it without cert-manager:
//
//   - the Secret <namespace>/doorman-controlplane-tls holds a self-signed
//     CA (ca.crt, ca.key), created by the first replica that finds it
//     missing (create-if-not-exists: a replica that loses the race reads
//     the winner's, so every replica shares one CA without a leader);
//   - the ConfigMap <namespace>/doorman-ca publishes the CA certificate
//     (ca.crt) for the agents, kept equal to the Secret's;
//   - each replica serves a certificate it issues itself from that CA, for
//     its own Pod IP, the Service's DNS names and any extra names, so two
//     replicas with different Pod IPs need no shared leaf.
//
// Both objects are watched: a deleted or edited ConfigMap is restored, a
// changed Secret (rotation, deletion) is reloaded and the serving
// certificate reissued; the leaf is also reissued before it expires.
//
// The pure half (CA and leaf generation, parsing) takes values and returns
// values; Manager is the thin shell around the API server. It must not
// import gRPC or anything of the hub.
package certs
