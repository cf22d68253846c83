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
	"github.com/doorman-proxy/doorman/controlplane/internal/certs"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	listen := flag.String("listen", ":9400", "gRPC listen address (agents, Inspect)")
	httpListen := flag.String("http-listen", ":9401", "HTTP listen address (/healthz, /readyz, /metrics); empty to disable")
	nodePortAddresses := flag.String("nodeport-addresses", "", "comma-separated CIDRs; NodePorts answer only on node addresses inside them (default: every InternalIP and ExternalIP)")
	insecure := flag.Bool("insecure", false, "serve gRPC in plaintext and admit every caller (local development only)")
	namespace := flag.String("namespace", envOr("POD_NAMESPACE", "doorman-system"), "namespace of the CA Secret and ConfigMap and of the agents' ServiceAccount (default: $POD_NAMESPACE, then doorman-system)")
	serviceName := flag.String("service-name", "doorman-controlplane", "the control plane's Service; its cluster DNS names go into the serving certificate")
	podIP := flag.String("pod-ip", os.Getenv("POD_IP"), "this replica's Pod IP, put into the serving certificate (default: $POD_IP)")
	tlsSANs := flag.String("tls-san", "", "comma-separated extra DNS names and IP addresses of the serving certificate")
	tlsSecret := flag.String("tls-secret", "doorman-controlplane-tls", "Secret holding the CA the serving certificate is issued from (created if missing)")
	caConfigMap := flag.String("ca-configmap", "doorman-ca", "ConfigMap publishing the CA certificate to the agents (created and kept in sync)")
	agentSA := flag.String("agent-service-account", "doorman-nodeagent", "the agents' ServiceAccount, in --namespace")
	audience := flag.String("token-audience", "doorman", "audience the agents' and Inspect callers' tokens must be bound to")
	tokenCache := flag.Duration("token-cache-ttl", 30*time.Second, "how long a TokenReview or SubjectAccessReview outcome is reused")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	flag.Parse()

	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", *logLevel)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "controlplane", Level: level})
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
			TokenCacheTTL:       *tokenCache,
			DNSNames:            certs.ServiceDNSNames(*namespace, *serviceName),
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
	return app.Run(ctx, app.Config{
		Client:            client,
		GRPCListener:      gl,
		HTTPListener:      hl,
		NodePortAddresses: cidrs,
		VersionSeed:       uint64(time.Now().UnixMicro()),
		Logger:            log,
		Security:          security,
	})
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
