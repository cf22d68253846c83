// Command demo is `make demo`: it builds what is missing, brings up a
// three-node local cluster (package cluster) running doorman, deploys the
// Bookstore and walks through what doorman does, printing PASS or FAIL for
// each step. The cluster stays up afterwards for exploring; `make
// demo-down` (demo down) tears it down.
//
//	demo        build, start the cluster in the background, run the steps
//	demo down   stop the background cluster and remove its namespaces
//
// The cluster lives in a background process ("demo serve") because the
// simulated Pods' servers and the relays run inside it; its log and
// state are under ${DOORMAN_CACHE:-~/.cache/doorman}/demo. It must not
// import doorman's controlplane or nodeagent packages.
package main
