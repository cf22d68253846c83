// Command bench measures doorman against upstream kube-proxy on the local
// cluster (package e2e/cluster), and doorman's control plane against
// thousands of simulated agents.
//
//	go run ./e2e/bench [-full] [flags]          # doorman vs kube-proxy nftables and iptables
//	go run ./e2e/bench scale [-full] [flags]    # control plane vs N simulated agents
//
// The first starts one cluster with three nodes: node1 runs doorman's node
// agent (fed by doorman's control plane), node2 kube-proxy in nftables
// mode, node3 kube-proxy in iptables mode, all watching the same API
// server. Services are selector-less with one hand-made EndpointSlice of
// two endpoints (two echo Pods), created by a bounded pool of parallel API
// writers. The systems are measured one after the other, each alone on the
// machine's CPUs, at each size. Kernel state is read by netlink (doorman's
// and kube-proxy's nftables tables) or iptables-save; commit times come from
// the nftables generation events of the node's namespace. Right before
// doorman's control plane starts, a LIST of every Service and one of every
// EndpointSlice (at once, in protobuf) times the API server's own share of
// the control plane's ready time; -controlplane-profile writes a CPU
// profile of the control plane's first seconds from its start.
//
// The second runs the real control plane (two replicas, from the binary)
// against the cluster's API server and N gRPC clients that speak
// AgentService.Sync exactly as agents do, minus the kernel. It is secured
// as deploy/base runs it: TLS from the CA the control plane keeps, and
// each simulated agent presents a token bound to a Pod on its node
// (TokenRequest, audience doorman, one hour), checked by TokenReview, from
// an address of its own on loopback. It measures start-up, single
// changes, single endpoint changes of a Service with externalTrafficPolicy
// Local and an endpoint on every node (sent by node: the replicas run with
// --local-endpoints-by-node), failover to the other replica, and a restart of every replica
// twice in the same run, secured and with --insecure, to compare what
// admission adds; the TokenReviews come from the API server's metrics.
// The run fails if an agent is never admitted and acked.
//
// Every simulated agent lives in the benchmark's one process, where each
// real agent has its node's memory: an agent holding nothing receives its
// full view (a few MB from the first byte to its ACK: gRPC's buffers, the
// message, its decoding) only while fewer than -full-views others do, and
// between updates an agent keeps a digest per key. Each stream is dialled
// on a connection of its own and closed after it, as the agent does.
// -heap-profile writes the process's heap profile nearest its peak, and
// the records hold its peak RSS and the replicas'.
//
// Both print a table, write JSON records to $BENCH_OUT and a PNG plot.
// Timing is reported, never asserted. It needs root; it may import the
// control plane's app package but no internal package of either binary.
package main
