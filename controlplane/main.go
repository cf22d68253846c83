// Command controlplane watches Services, EndpointSlices and Nodes and
// streams each node's view to the doorman agents.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/controlplane/app"
	"github.com/doorman-proxy/doorman/controlplane/internal/auth"
	"github.com/doorman-proxy/doorman/controlplane/internal/certs"
	"github.com/doorman-proxy/doorman/controlplane/internal/events"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/server"
	"github.com/doorman-proxy/doorman/controlplane/internal/view"
	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/kubeconfig"
	"github.com/doorman-proxy/doorman/internal/version"
)

func main() {
	if err := run(flag.CommandLine, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

// run registers the control plane's flags on the set named flag (the
// parameter stands in for the package's global set, so each flag line
// reads as in any command), parses args and runs the control plane.
func run(flag *flag.FlagSet, args []string) error {
	f := registerFlags(flag)
	// Configuration file.
	configFile := config.Register(flag, config.ControlPlaneKind)
	// Build.
	printVersion := flag.Bool("version", false, "print the build (version, commit, Go version, stream protocol) and exit")
	if err := flag.Parse(args); err != nil {
		return err
	}
	if *printVersion {
		fmt.Println(version.Line("controlplane"))
		return nil
	}
	effective, loadErr := configFile.Load()
	if loadErr != nil {
		return loadErr
	}
	if path := configFile.WriteTo(); path != "" {
		return effective.Write(path)
	}
	if f.changeLogLimit < 1 {
		return fmt.Errorf("--change-log-limit %d: keep at least 1 change record", f.changeLogLimit)
	}
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	log.Info("doorman controlplane", "version", version.Get().String())
	log.Info("configuration", effective.KeyValues()...)
	security := f.security(log)
	cfg, client, err := f.kubernetesClients(security)
	if err != nil {
		return err
	}
	gl, hl, err := f.openListeners()
	if err != nil {
		return err
	}
	cidrs := splitList(f.nodePortAddresses)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	recorder, err := eventRecorder(ctx, cfg, f.eventQPS, f.eventBurst)
	if err != nil {
		return err
	}
	return app.Run(ctx, app.Config{
		Client:            client,
		GRPCListener:      gl,
		HTTPListener:      hl,
		Profiling:         f.profiling,
		NodePortAddresses: cidrs,
		VersionSeed:       uint64(time.Now().UnixMicro()),
		Logger:            log,
		Security:          security,
		Events:            recorder,
		StaleAfter:        f.staleAfter,
		Configuration:     effective,
		Limits:            f.limits,
		LogLimit:          f.changeLogLimit,
		EndpointsByNode:   f.localEndpointsByNode,
	})
}

// flags are the control plane's command line.
type flags struct {
	kubeconfig, grpcListen, httpListen, nodePortAddresses string
	insecure                                              bool
	namespace, serviceName, podIP, tlsSANs                string
	tlsSecret, caConfigMap, agentSA, audience             string
	authLimits                                            auth.Limits
	localTokens                                           bool
	profiling                                             bool
	limits                                                server.Limits
	logLevel                                              string
	staleAfter                                            time.Duration
	eventQPS                                              float64
	eventBurst                                            int
	changeLogLimit                                        int
	localEndpointsByNode                                  bool
}

func registerFlags(flag *flag.FlagSet) *flags {
	f := &flags{}
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&f.grpcListen, "listen", ":9400", "gRPC listen address (agents, Inspect)")
	flag.StringVar(&f.httpListen, "http-listen", ":9401", "HTTP listen address (/healthz, /readyz, /metrics); empty to disable")
	flag.BoolVar(&f.profiling, "profiling", false, "serve Go's profiles under /debug/pprof/ on --http-listen (anyone who reaches that address can read them)")
	flag.StringVar(&f.nodePortAddresses, "nodeport-addresses", "", "NodePorts answer only on the node's addresses inside these comma-separated CIDRs, or with \"primary\" on its primary address of each family (the first InternalIP, else the first ExternalIP), as kube-proxy's --nodeport-addresses (default: every InternalIP and ExternalIP)")
	f.registerSecurityFlags(flag)
	f.registerConnectionFlags(flag)
	flag.StringVar(&f.logLevel, "log-level", "info", "trace, debug, info, warn or error")
	// Freshness.
	flag.DurationVar(&f.staleAfter, "stale-after", app.DefaultStaleAfter, "/readyz fails once a watched resource has had no event or bookmark from the API server for longer (the API server sends a bookmark about once a minute); negative: never")
	// Warning Events on Services.
	flag.Float64Var(&f.eventQPS, "event-qps", 5, "Events per second posted on Services (address conflicts, refused Services), all Services together, with a client of their own; each Service also gets at most 25 at once, then one per 5 minutes; 0: post none")
	flag.IntVar(&f.eventBurst, "event-burst", 25, "burst of --event-qps")
	// Memory.
	flag.IntVar(&f.changeLogLimit, "change-log-limit", view.DefaultLogLimit, "change records kept (which keys changed at which version), so that an agent that reconnects is sent only what changed since its version; an agent further behind resumes by bucket digests. The log grows until it holds this many, then stays that size")
	// Stream.
	flag.BoolVar(&f.localEndpointsByNode, "local-endpoints-by-node", false, "send the ports of Services with externalTrafficPolicy or internalTrafficPolicy Local by node: one entry every node holds and one shard per node with endpoints, so that an endpoint's change sends one shard to each node and the cost grows with nodes plus endpoints, not nodes times endpoints. Agents older than stream protocol 2 cannot assemble them and are refused: turn it on once every agent speaks protocol 2")
	return f
}

// registerSecurityFlags registers the serving certificate's and the
// admission's flags.
func (f *flags) registerSecurityFlags(flag *flag.FlagSet) {
	flag.BoolVar(&f.insecure, "insecure", false, "serve gRPC in plaintext and admit every caller (local development only)")
	flag.StringVar(&f.namespace, "namespace", envOr("POD_NAMESPACE", "doorman-system"), "namespace of the CA Secret and ConfigMap and of the agents' ServiceAccount (default: $POD_NAMESPACE, then doorman-system)")
	flag.StringVar(&f.serviceName, "service-name", "doorman-controlplane", "the control plane's Service; its cluster DNS names go into the serving certificate")
	flag.StringVar(&f.podIP, "pod-ip", os.Getenv("POD_IP"), "this replica's Pod IP, put into the serving certificate (default: $POD_IP)")
	flag.StringVar(&f.tlsSANs, "tls-san", "", "comma-separated extra DNS names and IP addresses of the serving certificate")
	flag.StringVar(&f.tlsSecret, "tls-secret", "doorman-controlplane-tls", "Secret holding the CA the serving certificate is issued from (created if missing)")
	flag.StringVar(&f.caConfigMap, "ca-configmap", "doorman-ca", "ConfigMap publishing the CA certificate to the agents (created and kept in sync)")
	flag.StringVar(&f.agentSA, "agent-service-account", "doorman-nodeagent", "the agents' ServiceAccount, in --namespace")
	flag.StringVar(&f.audience, "token-audience", "doorman", "audience the agents' and Inspect callers' tokens must be bound to")
	l := &f.authLimits
	flag.DurationVar(&l.SuccessTTL, "token-cache-ttl", auth.DefaultSuccessTTL, "how long an admission (TokenReview, and SubjectAccessReview for Inspect) is reused, never past the token's expiry; negative: not cached")
	flag.DurationVar(&l.FailureTTL, "token-cache-failure-ttl", auth.DefaultFailureTTL, "how long a refused token stays refused without a new review (refusals have a cache of their own); negative: not cached")
	flag.Float64Var(&l.ReviewQPS, "token-review-qps", auth.DefaultReviewQPS, "TokenReviews and SubjectAccessReviews per second sent to the API server; negative: no bound")
	flag.IntVar(&l.ReviewBurst, "token-review-burst", auth.DefaultReviewBurst, "burst of --token-review-qps")
	flag.DurationVar(&l.ReviewTimeout, "token-review-timeout", auth.DefaultReviewTimeout, "the most a review waits for its turn under --token-review-qps, and then the most the API server may take to answer it")
	flag.Float64Var(&l.PeerFailureQPS, "auth-failures-per-peer-qps", auth.DefaultPeerFailureQPS, "failed reviews per second each remote address may cause, once its burst is spent (it is then refused without a review)")
	flag.IntVar(&l.PeerFailureBurst, "auth-failures-per-peer-burst", auth.DefaultPeerFailureBurst, "failed reviews a remote address may cause in a burst; negative: no per-peer budget")
	// Local verification of agents' tokens.
	flag.BoolVar(&f.localTokens, "local-token-verification", true, "verify agents' tokens in the control plane with the API server's service-account keys (its /openid/v1/jwks) and the agents' Pods, instead of a TokenReview each; TokenReviews remain for tokens it cannot verify, and for all while the keys cannot be read")
}

// registerConnectionFlags registers the gRPC server's limits.
func (f *flags) registerConnectionFlags(flag *flag.FlagSet) {
	l := &f.limits
	flag.IntVar(&l.MaxConnections, "max-connections", server.DefaultMaxConnections, "gRPC connections open at once; more wait in the listen backlog; negative: no cap")
	flag.IntVar(&l.MaxConcurrentStreams, "max-concurrent-streams", server.DefaultMaxConcurrentStreams, "streams per gRPC connection (an agent opens one)")
	flag.DurationVar(&l.MaxConnectionAge, "max-connection-age", server.DefaultMaxConnectionAge, "a gRPC connection is ended (GOAWAY) after this long, ±10 %, so agents authenticate again and resume by digests; negative: never")
	flag.DurationVar(&l.MaxConnectionAgeGrace, "max-connection-age-grace", server.DefaultMaxConnectionAgeGrace, "after --max-connection-age, how long streams still run before the connection is closed")
	flag.DurationVar(&l.MaxConnectionIdle, "max-connection-idle", server.DefaultMaxConnectionIdle, "a gRPC connection with no stream open is closed after this long, pings or not; negative: never")
}

func newLogger(logLevel string) (hclog.Logger, error) {
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", logLevel)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "controlplane", Level: level}), nil
}

// security is what serving over TLS and admitting callers takes; nil with
// --insecure. Its ReviewClient is set with the Kubernetes clients.
func (f *flags) security(log hclog.Logger) *app.Security {
	if f.insecure {
		log.Warn("serving grpc without tls and without authentication: any client can connect and read every node's view")
		return nil
	}
	security := &app.Security{
		Namespace:              f.namespace,
		SecretName:             f.tlsSecret,
		ConfigMapName:          f.caConfigMap,
		AgentServiceAccount:    f.agentSA,
		Audiences:              []string{f.audience},
		AuthLimits:             f.authLimits,
		DNSNames:               certs.ServiceDNSNames(f.namespace, f.serviceName),
		LocalTokenVerification: f.localTokens,
	}
	sans := splitList(f.tlsSANs)
	if f.podIP != "" {
		sans = append(sans, f.podIP)
	}
	for _, san := range sans {
		if ip := net.ParseIP(san); ip != nil {
			security.IPs = append(security.IPs, ip)
		} else {
			security.DNSNames = append(security.DNSNames, san)
		}
	}
	return security
}

// kubernetesClients returns the API server's configuration and the
// control plane's client, and sets security's ReviewClient.
func (f *flags) kubernetesClients(security *app.Security) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	if strings.Contains(cfg.Host, placeholderServer) {
		return nil, nil, fmt.Errorf("kubeconfig %s: the API server address %s is the placeholder deploy/base ships: set the real address in the ConfigMap doorman-system/doorman-kubeconfig (see deploy/README.md)", f.kubeconfig, cfg.Host)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if security != nil {
		// Reviews get a client of their own without client-go's
		// default limit (5/s, which would admit 5,000 agents in 17
		// minutes): --token-review-qps bounds them, clean callers first.
		rcfg := rest.CopyConfig(cfg)
		rcfg.QPS = -1
		if security.ReviewClient, err = kubernetes.NewForConfig(rcfg); err != nil {
			return nil, nil, fmt.Errorf("kubernetes client for reviews: %w", err)
		}
	}
	return cfg, client, nil
}

// openListeners opens the gRPC listener and the HTTP one (nil without
// --http-listen).
func (f *flags) openListeners() (grpcListener, httpListener net.Listener, err error) {
	if grpcListener, err = net.Listen("tcp", f.grpcListen); err != nil {
		return nil, nil, fmt.Errorf("listen grpc: %w", err)
	}
	if f.httpListen != "" {
		if httpListener, err = net.Listen("tcp", f.httpListen); err != nil {
			return nil, nil, fmt.Errorf("listen http: %w", err)
		}
	}
	return grpcListener, httpListener, nil
}

// eventRecorder starts posting Warning Events on Services, with a client
// of its own whose rate --event-qps and --event-burst bound; nil when
// --event-qps is 0 or less.
func eventRecorder(ctx context.Context, cfg *rest.Config, qps float64, burst int) (hub.Events, error) {
	if qps <= 0 {
		return nil, nil
	}
	ecfg := rest.CopyConfig(cfg)
	ecfg.QPS, ecfg.Burst = float32(qps), burst
	client, err := kubernetes.NewForConfig(ecfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for events: %w", err)
	}
	host, err := os.Hostname() // the Pod's name
	if err != nil {
		return nil, fmt.Errorf("events: host name: %w", err)
	}
	return events.Start(ctx, events.Config{Client: client, Host: host}), nil
}

// placeholderServer is the host deploy/base puts in the ConfigMap
// doorman-kubeconfig for the one edit every install needs; left unedited,
// the control plane would retry an address that cannot resolve forever.
const placeholderServer = "API_SERVER_HOST"

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
