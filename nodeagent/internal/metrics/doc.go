// Package metrics owns the node agent's Prometheus series, on a private
// registry passed down from app (no global state), and serves /metrics.
//
// Names follow kube-proxy where the meaning matches, so existing dashboards
// and ClusterLoader2 work unchanged:
//
//   - kubeproxy_sync_proxy_rules_duration_seconds: each kernel transaction
//     (Apply or Sync);
//   - kubeproxy_network_programming_duration_seconds: from a ServicePort's
//     trigger time (the EndpointSlice's last-change-trigger-time) to the
//     commit of the transaction that programmed it;
//   - kubeproxy_sync_proxy_rules_last_timestamp_seconds;
//   - kubeproxy_proxy_healthz_total{code} and kubeproxy_proxy_livez_total{code}:
//     answers of /healthz and /livez (Health);
//   - kubeproxy_sync_proxy_rules_{service,endpoint}_changes_{total,pending}
//     and kubeproxy_sync_proxy_rules_no_local_endpoints_total (Rules): the
//     agent has no sync loop and the control plane coalesces changes, so
//     the change series count ServicePort entries changed by kernel
//     transactions; each help text says what it counts.
//
// doorman's own are named doorman_agent_*. Totals the agent keeps (acks,
// NACKs, full syncs, drift repairs, version, connected) are read from it at
// scrape time, so GetState and /metrics never disagree.
//
// metrics reads the clock (it is a shell); it may import the agent, the
// dataplane's types, followup's pure Changes, gRPC's stats API and
// client_golang; it must not import netlink or bbolt.
package metrics
