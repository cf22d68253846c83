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
	"k8s.io/client-go/tools/clientcmd"

	"github.com/doorman-proxy/doorman/controlplane/app"
	"github.com/doorman-proxy/doorman/controlplane/internal/auth"
	"github.com/doorman-proxy/doorman/controlplane/internal/certs"
	"github.com/doorman-proxy/doorman/controlplane/internal/events"
	"github.com/doorman-proxy/doorman/controlplane/internal/hub"
	"github.com/doorman-proxy/doorman/controlplane/internal/server"
	"github.com/doorman-proxy/doorman/internal/config"
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
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	listen := flag.String("listen", ":9400", "gRPC listen address (agents, Inspect)")
	httpListen := flag.String("http-listen", ":9401", "HTTP listen address (/healthz, /readyz, /metrics); empty to disable")
	nodePortAddresses := flag.String("nodeport-addresses", "", "NodePorts answer only on the node's addresses inside these comma-separated CIDRs, or with \"primary\" on its primary address of each family (the first InternalIP, else the first ExternalIP), as kube-proxy's --nodeport-addresses (default: every InternalIP and ExternalIP)")
	insecure := flag.Bool("insecure", false, "serve gRPC in plaintext and admit every caller (local development only)")
	namespace := flag.String("namespace", envOr("POD_NAMESPACE", "doorman-system"), "namespace of the CA Secret and ConfigMap and of the agents' ServiceAccount (default: $POD_NAMESPACE, then doorman-system)")
	serviceName := flag.String("service-name", "doorman-controlplane", "the control plane's Service; its cluster DNS names go into the serving certificate")
	podIP := flag.String("pod-ip", os.Getenv("POD_IP"), "this replica's Pod IP, put into the serving certificate (default: $POD_IP)")
	tlsSANs := flag.String("tls-san", "", "comma-separated extra DNS names and IP addresses of the serving certificate")
	tlsSecret := flag.String("tls-secret", "doorman-controlplane-tls", "Secret holding the CA the serving certificate is issued from (created if missing)")
	caConfigMap := flag.String("ca-configmap", "doorman-ca", "ConfigMap publishing the CA certificate to the agents (created and kept in sync)")
	agentSA := flag.String("agent-service-account", "doorman-nodeagent", "the agents' ServiceAccount, in --namespace")
	audience := flag.String("token-audience", "doorman", "audience the agents' and Inspect callers' tokens must be bound to")
	tokenCache := flag.Duration("token-cache-ttl", auth.DefaultSuccessTTL, "how long an admission (TokenReview, and SubjectAccessReview for Inspect) is reused, never past the token's expiry; negative: not cached")
	tokenFailureCache := flag.Duration("token-cache-failure-ttl", auth.DefaultFailureTTL, "how long a refused token stays refused without a new review (refusals have a cache of their own); negative: not cached")
	reviewQPS := flag.Float64("token-review-qps", auth.DefaultReviewQPS, "TokenReviews and SubjectAccessReviews per second sent to the API server; negative: no bound")
	reviewBurst := flag.Int("token-review-burst", auth.DefaultReviewBurst, "burst of --token-review-qps")
	reviewTimeout := flag.Duration("token-review-timeout", auth.DefaultReviewTimeout, "the most a review waits for its turn under --token-review-qps, and then the most the API server may take to answer it")
	peerFailureQPS := flag.Float64("auth-failures-per-peer-qps", auth.DefaultPeerFailureQPS, "failed reviews per second each remote address may cause, once its burst is spent (it is then refused without a review)")
	peerFailureBurst := flag.Int("auth-failures-per-peer-burst", auth.DefaultPeerFailureBurst, "failed reviews a remote address may cause in a burst; negative: no per-peer budget")
	// Local verification of agents' tokens.
	localTokens := flag.Bool("local-token-verification", true, "verify agents' tokens in the control plane with the API server's service-account keys (its /openid/v1/jwks) and the agents' Pods, instead of a TokenReview each; TokenReviews remain for tokens it cannot verify, and for all while the keys cannot be read")
	maxConns := flag.Int("max-connections", server.DefaultMaxConnections, "gRPC connections open at once; more wait in the listen backlog; negative: no cap")
	maxStreams := flag.Int("max-concurrent-streams", server.DefaultMaxConcurrentStreams, "streams per gRPC connection (an agent opens one)")
	maxAge := flag.Duration("max-connection-age", server.DefaultMaxConnectionAge, "a gRPC connection is ended (GOAWAY) after this long, ±10 %, so agents authenticate again and resume by digests; negative: never")
	maxAgeGrace := flag.Duration("max-connection-age-grace", server.DefaultMaxConnectionAgeGrace, "after --max-connection-age, how long streams still run before the connection is closed")
	maxIdle := flag.Duration("max-connection-idle", server.DefaultMaxConnectionIdle, "a gRPC connection with no stream open is closed after this long, pings or not; negative: never")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	// Freshness.
	staleAfter := flag.Duration("stale-after", app.DefaultStaleAfter, "/readyz fails once a watched resource has had no event or bookmark from the API server for longer (the API server sends a bookmark about once a minute); negative: never")
	// Warning Events on Services.
	eventQPS := flag.Float64("event-qps", 5, "Events per second posted on Services (address conflicts, refused Services), all Services together, with a client of their own; each Service also gets at most 25 at once, then one per 5 minutes; 0: post none")
	eventBurst := flag.Int("event-burst", 25, "burst of --event-qps")
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

	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", *logLevel)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "controlplane", Level: level})
	log.Info("doorman controlplane", "version", version.Get().String())
	log.Info("configuration", effective.KeyValues()...)
	var security *app.Security
	if *insecure {
		log.Warn("serving grpc without tls and without authentication: any client can connect and read every node's view")
	} else {
		security = &app.Security{
			Namespace:           *namespace,
			SecretName:          *tlsSecret,
			ConfigMapName:       *caConfigMap,
			AgentServiceAccount: *agentSA,
			Audiences:           []string{*audience},
			AuthLimits: auth.Limits{
				SuccessTTL: *tokenCache, FailureTTL: *tokenFailureCache,
				ReviewQPS: *reviewQPS, ReviewBurst: *reviewBurst, ReviewTimeout: *reviewTimeout,
				PeerFailureQPS: *peerFailureQPS, PeerFailureBurst: *peerFailureBurst,
			},
			DNSNames:               certs.ServiceDNSNames(*namespace, *serviceName),
			LocalTokenVerification: *localTokens,
		}
		sans := splitList(*tlsSANs)
		if *podIP != "" {
			sans = append(sans, *podIP)
		}
		for _, san := range sans {
			if ip := net.ParseIP(san); ip != nil {
				security.IPs = append(security.IPs, ip)
			} else {
				security.DNSNames = append(security.DNSNames, san)
			}
		}
	}

	var cfg *rest.Config
	var err error
	if *kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	}
	if err != nil {
		return fmt.Errorf("kubernetes client configuration: %w", err)
	}
	if strings.Contains(cfg.Host, placeholderServer) {
		return fmt.Errorf("kubeconfig %s: the API server address %s is the placeholder deploy/base ships: set the real address in the ConfigMap doorman-system/doorman-kubeconfig (see deploy/README.md)", *kubeconfig, cfg.Host)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if security != nil {
		// Reviews get a client of their own without client-go's
		// default limit (5/s, which would admit 5,000 agents in 17
		// minutes): --token-review-qps bounds them, clean callers first.
		rcfg := rest.CopyConfig(cfg)
		rcfg.QPS = -1
		if security.ReviewClient, err = kubernetes.NewForConfig(rcfg); err != nil {
			return fmt.Errorf("kubernetes client for reviews: %w", err)
		}
	}
	gl, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen grpc: %w", err)
	}
	var hl net.Listener
	if *httpListen != "" {
		if hl, err = net.Listen("tcp", *httpListen); err != nil {
			return fmt.Errorf("listen http: %w", err)
		}
	}
	cidrs := splitList(*nodePortAddresses)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	recorder, err := eventRecorder(ctx, cfg, *eventQPS, *eventBurst)
	if err != nil {
		return err
	}
	return app.Run(ctx, app.Config{
		Client:            client,
		GRPCListener:      gl,
		HTTPListener:      hl,
		NodePortAddresses: cidrs,
		VersionSeed:       uint64(time.Now().UnixMicro()),
		Logger:            log,
		Security:          security,
		Events:            recorder,
		StaleAfter:        *staleAfter,
		Configuration:     effective,
		Limits: server.Limits{
			MaxConnections: *maxConns, MaxConcurrentStreams: *maxStreams,
			MaxConnectionAge: *maxAge, MaxConnectionAgeGrace: *maxAgeGrace, MaxConnectionIdle: *maxIdle,
		},
	})
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
