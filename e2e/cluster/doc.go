// Package cluster runs a Kubernetes cluster on one machine in network
// namespaces, the "netns" provider of the e2e suite, the demo and the
// benchmarks.
//
// Real components run on loopback in the caller's namespace: etcd,
// kube-apiserver and kube-controller-manager (EndpointSlice, ReplicaSet,
// Deployment, ServiceAccount, namespace and garbage-collector controllers),
// plus doorman's control plane. Nodes are network namespaces on a bridge
// that lives in a namespace of its own ("<prefix>-net", 10.250.0.1/24); each
// is a Node object kept Ready by the cluster (Lease and Ready heartbeats)
// and runs a node agent (or kube-proxy, or nothing). The control plane's
// gRPC port and the API server's port are relayed from 10.250.0.1 to
// loopback, so no address or rule is added to the caller's namespace.
//
// A node simulator plays scheduler and kubelet: it binds Pods round-robin,
// gives each a namespace with a veth into its node (point-to-point, an
// address from the node's Pod CIDR, routes between nodes so the Pod
// network is flat), runs an echo server (package echo) on the container
// ports and reports the Pod Running and Ready. Deletion is graceful: the
// Pod keeps serving for its grace period (the EndpointSlice shows it
// serving and terminating), then its namespace goes and the Pod object is
// removed.
//
// The cluster is dual-stack, IPv4 primary. Addresses: nodes 10.250.0.11…
// and fd00:10:250::11…, external client 10.250.0.100 and fd00:10:250::100,
// Pods 10.244.<node>.0/24 and fd00:10:244:<node, hex>::/64 (both in every
// Node's podCIDRs and every Pod's podIPs; a Pod's IPv6 default route is
// fe80::1, its node's end of the veth), Services 10.96.0.0/12 and
// fd00:10:96::/108. IPv6 duplicate address detection is off and IPv6
// forwarding on in the node namespaces. Everything is torn down by Close;
// Cleanup removes what a killed run left behind.
//
// It needs root, ip(8) and the binaries built by e2e/hack/build-k8s.sh. It
// must not import doorman's controlplane or nodeagent packages: it runs
// their binaries.
package cluster
