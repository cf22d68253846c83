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
	httpListen := flag.String("http-listen", ":9401", "HTTP listen address (/healthz, /readyz); empty to disable")
	nodePortAddresses := flag.String("nodeport-addresses", "", "comma-separated CIDRs; NodePorts answer only on node addresses inside them (default: every InternalIP and ExternalIP)")
	insecure := flag.Bool("insecure", false, "serve gRPC in plaintext (required: TLS is not implemented yet)")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	flag.Parse()

	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", *logLevel)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "controlplane", Level: level})
	if !*insecure {
		return fmt.Errorf("--insecure is required: TLS is not implemented yet")
	}
	log.Warn("serving grpc without tls: any client can connect and read every node's view")

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
	var cidrs []string
	for _, c := range strings.Split(*nodePortAddresses, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cidrs = append(cidrs, c)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return app.Run(ctx, app.Config{
		Client:            client,
		GRPCListener:      gl,
		HTTPListener:      hl,
		NodePortAddresses: cidrs,
		VersionSeed:       uint64(time.Now().UnixMicro()),
		Logger:            log,
	})
}
