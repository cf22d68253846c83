// Command nodeagent is doorman's node agent: it receives its node's view
// from the control plane and programs it into the kernel's nftables.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/version"
	"github.com/doorman-proxy/doorman/nodeagent/app"
	"github.com/doorman-proxy/doorman/nodeagent/internal/conntrack"
	"github.com/doorman-proxy/doorman/nodeagent/internal/credentials"
	"github.com/doorman-proxy/doorman/nodeagent/internal/healthcheck"
	"github.com/doorman-proxy/doorman/nodeagent/internal/inspect"
	"github.com/doorman-proxy/doorman/nodeagent/internal/kube"
	"github.com/doorman-proxy/doorman/nodeagent/internal/kubeproxy"
	"github.com/doorman-proxy/doorman/nodeagent/internal/stream"
)

func main() {
	if err := run(flag.CommandLine, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nodeagent:", err)
		os.Exit(1)
	}
}

// run registers the agent's flags on the set named flag (the parameter
// stands in for the package's global set, so each flag line reads as in
// any command), parses args and runs the agent.
func run(flag *flag.FlagSet, args []string) error {
	defaultNode := os.Getenv("NODE_NAME")
	if defaultNode == "" {
		defaultNode, _ = os.Hostname()
	}
	var (
		nodeName      = flag.String("node-name", defaultNode, "this node's name (default: $NODE_NAME, then the hostname)")
		controlPlanes = flag.String("control-plane", "", "control plane gRPC addresses, host:port, comma-separated; tried in turn")
		cpService     = flag.String("control-plane-service", "", "control plane Service as NAMESPACE/NAME:PORTNAME (e.g. doorman-system/doorman-controlplane:grpc): its ready endpoints, from the API server's EndpointSlices, are tried in turn after --control-plane")
		kubeconfig    = flag.String("kubeconfig", "", "kubeconfig file for --control-plane-service (default: in-cluster configuration)")
		apiServer     = flag.String("apiserver", "", "API server URL for --control-plane-service, overriding the configuration's; in-cluster configuration points at the kubernetes Service VIP, which doorman itself programs, so a fresh node needs a real address here (or in --kubeconfig)")
		hcAddress     = flag.String("health-check-address", "", "IP the healthCheckNodePort servers listen on (\"\" = every address)")
		cachePath     = flag.String("cache", "/var/lib/doorman/cache.db", "cache file of the last applied view (\"\" = none)")
		inspectSocket = flag.String("inspect-socket", "/run/doorman/inspect.sock", "unix socket of the local Inspect gRPC service, mode 0600 (root only); grpcurl -plaintext -unix PATH … (\"\" = off)")
		inspectListen = flag.String("inspect-listen", "", "TCP address of the Inspect gRPC service too, e.g. 127.0.0.1:9410: unauthenticated, and it shows the whole view, to anyone who can connect (\"\" = off)")
		healthListen  = flag.String("health-listen", ":10256", "address of /healthz and /livez (\"\" = off)")
		healthTimeout = flag.Duration("healthz-timeout", healthcheck.DefaultTimeout, "/healthz and /livez answer 503 once an update from the control plane (or a drift repair) has waited this long for the kernel; kube-proxy's is twice its 30s sync period")
		maxCacheAge   = flag.Duration("max-cache-age", 24*time.Hour, "oldest cached view programmed at start-up, counted from when a control plane last confirmed it: an older one may send traffic to Pod IPs reused since, so the agent waits for a control plane instead (0 = any age)")
		metricsListen = flag.String("metrics-bind-address", "127.0.0.1:10249", "address of /metrics (Prometheus) and /proxyMode, as kube-proxy's (\"\" = off)")
		resyncPeriod  = flag.Duration("resync-period", 5*time.Minute, "period of the backstop full reconcile of the kernel table, on top of the event monitor (0 = off)")
		netns         = flag.String("netns", "", "network namespace to program, e.g. /run/netns/node1 (\"\" = the agent's own)")
		plaintext     = flag.Bool("insecure", false, "talk to the control plane over plaintext gRPC (local development only)")
		tokenFile     = flag.String("token-file", credentials.DefaultTokenFile, "projected ServiceAccount token (audience doorman) shown to the control plane, re-read on every connect")
		caFile        = flag.String("ca-file", "", "CA bundle (PEM) the control plane's certificate must chain to (default: read --ca-configmap through the API server)")
		caConfigMap   = flag.String("ca-configmap", credentials.DefaultCAConfigMap, "NAMESPACE/NAME of the ConfigMap whose ca.crt the control plane publishes, read when --ca-file is not set")
		serverName    = flag.String("server-name", credentials.DefaultServerName, "name the control plane's certificate must carry (\"\" = the dialled host)")
		logLevel      = flag.String("log-level", "info", "log level: trace, debug, info, warn, error")
		cleanup       = flag.Bool("cleanup", false, "remove everything the agent put on this node (the nftables table inet doorman, the --cache file) and exit; waits for a running agent to exit first (it holds the cache); for uninstalling, like kube-proxy's --cleanup")
		wait          = flag.Bool("wait", false, "with --cleanup: after cleaning up, stay running until SIGTERM (the main container of a clean-up DaemonSet, so its rollout shows every node done)")
		ctDefaults    = conntrack.DefaultSettings()
		ctMaxPerCore  = flag.Int("conntrack-max-per-core", ctDefaults.MaxPerCore, "raise nf_conntrack_max to this many entries per CPU, at least --conntrack-min (0 = leave it; never lowered; settable only in the host's network namespace)")
		ctMin         = flag.Int("conntrack-min", ctDefaults.Min, "the least nf_conntrack_max --conntrack-max-per-core raises it to")
		ctEstablished = flag.Duration("conntrack-tcp-timeout-established", ctDefaults.TCPEstablished, "idle timeout of established TCP conntrack entries (0 = leave it)")
		ctCloseWait   = flag.Duration("conntrack-tcp-timeout-close-wait", ctDefaults.TCPCloseWait, "timeout of TCP conntrack entries in CLOSE_WAIT (0 = leave it)")
		ctBeLiberal   = flag.Bool("conntrack-tcp-be-liberal", ctDefaults.TCPBeLiberal, "set nf_conntrack_tcp_be_liberal: out-of-window TCP packets are not marked invalid (false = leave it)")
		ctUDP         = flag.Duration("conntrack-udp-timeout", ctDefaults.UDP, "timeout of unreplied UDP conntrack entries (0 = leave it)")
		ctUDPStream   = flag.Duration("conntrack-udp-timeout-stream", ctDefaults.UDPStream, "timeout of replied UDP conntrack entries (0 = leave it)")
		sysctlRecord  = flag.String("sysctl-record", "", "file recording each sysctl the agent changes and its value before, for --cleanup to put back (\"\" = "+conntrack.RecordFile+" beside --cache, /var/lib/doorman/"+conntrack.RecordFile+" by default)")
		rmKubeProxy   = flag.Bool("remove-kube-proxy-rules", false, "remove the rules a stopped kube-proxy left on this node (nftables tables ip/ip6 kube-proxy; its KUBE-* chains, and the jumps to them, in iptables-nft's nat, filter and mangle tables) and exit; legacy iptables rules stay: run kube-proxy --cleanup for those")
		ctOnly        = flag.Bool("conntrack-sysctls-only", false, "set the --conntrack-* sysctls in this network namespace and exit (for a privileged init container: the agent's own container cannot write /proc/sys)")
	)
	// Local traffic detection and ClusterIP masquerade, as kube-proxy's.
	localFlags := app.LocalTrafficFlags{}
	flag.StringVar(&localFlags.DetectLocalMode, "detect-local-mode", "",
		"how traffic from a local Pod is told from other traffic, for externalTrafficPolicy Local (Pods count as inside the cluster) and ClusterIP masquerade (other sources are masqueraded): NodeCIDR (the source is in the node's spec.podCIDRs), ClusterCIDR (in --cluster-cidr), BridgeInterface (it arrived on --pod-bridge-interface) or InterfaceNamePrefix (on an interface named --pod-interface-name-prefix*). Unset: the node's spec.podCIDRs decide externalTrafficPolicy Local's split and no ClusterIP traffic is masqueraded, as kube-proxy with its default ClusterCIDR and no --cluster-cidr; so a CNI whose Pod addresses are outside spec.podCIDRs keeps its Pods' source addresses")
	flag.StringVar(&localFlags.ClusterCIDR, "cluster-cidr", "",
		"the cluster's Pod CIDRs, comma-separated, at most one per family, for --detect-local-mode=ClusterCIDR (otherwise unused)")
	flag.StringVar(&localFlags.PodBridgeInterface, "pod-bridge-interface", "",
		"the Pods' bridge, for --detect-local-mode=BridgeInterface: traffic arriving on it is from a local Pod")
	flag.StringVar(&localFlags.PodInterfaceNamePrefix, "pod-interface-name-prefix", "",
		"a name prefix of the Pods' interfaces, for --detect-local-mode=InterfaceNamePrefix: traffic arriving on an interface whose name starts with it is from a local Pod")
	flag.BoolVar(&localFlags.MasqueradeAll, "masquerade-all", false,
		"masquerade all traffic to ClusterIPs, not only what is not from a local Pod (some CNI plugins need it)")
	// NodePorts on 127.0.0.0/8 for the node's own processes.
	localhostNodePorts := flag.Bool("localhost-nodeports", false,
		"serve NodePorts on 127.0.0.0/8 to the node's own processes (IPv4 only), as kube-proxy's --iptables-localhost-nodeports: sets net.ipv4.conf.all.route_localnet=1 with the --conntrack-* sysctls (pass it to the --conntrack-sysctls-only init container too); packets to 127.0.0.0/8 from other hosts are dropped whether or not it is set (CVE-2020-8558)")
	// Freshness of the control planes' updates.
	acceptBehindAfter := flag.Duration("accept-behind-after", stream.DefaultAcceptBehindAfter,
		"updates behind what this node applied (a control plane whose API-server watch fell behind) are refused; once refusals have lasted this long with nothing accepted, every control plane is behind (etcd restored from a backup) and the next is accepted, logged as an error (negative: never)")
	// Configuration file. --cleanup, --wait, --conntrack-sysctls-only and
	// --remove-kube-proxy-rules are actions of one run, not settings:
	// command line only.
	configFile := config.Register(flag, config.NodeAgentKind, "cleanup", "wait", "conntrack-sysctls-only", "remove-kube-proxy-rules")
	// Build.
	printVersion := flag.Bool("version", false, "print the build (version, commit, Go version, stream protocol) and exit")
	if err := flag.Parse(args); err != nil {
		return err
	}
	if *printVersion {
		fmt.Println(version.Line("nodeagent"))
		return nil
	}
	effective, loadErr := configFile.Load()
	if loadErr != nil {
		return loadErr
	}
	if path := configFile.WriteTo(); path != "" {
		return effective.Write(path)
	}
	ctSettings := conntrack.Settings{MaxPerCore: *ctMaxPerCore, Min: *ctMin, TCPEstablished: *ctEstablished,
		TCPCloseWait: *ctCloseWait, TCPBeLiberal: *ctBeLiberal, UDP: *ctUDP, UDPStream: *ctUDPStream,
		Record: recordPath(*sysctlRecord, *cachePath)}
	ctSettings.RouteLocalnet = *localhostNodePorts

	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		return fmt.Errorf("unknown --log-level %q", *logLevel)
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "nodeagent", Level: level})
	log.Info("doorman nodeagent", "version", version.Get().String())
	log.Info("configuration", effective.KeyValues()...)

	// SIGINT and SIGTERM stop the agent (the kernel keeps doorman's rules)
	// and a clean-up that waits.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *ctOnly {
		_, err := conntrack.Apply(log, *netns, runtime.NumCPU(), ctSettings)
		return err
	}
	if *rmKubeProxy {
		if *cleanup {
			return fmt.Errorf("--remove-kube-proxy-rules and --cleanup are separate runs")
		}
		if _, err := kubeproxy.Remove(log, *netns); err != nil {
			return err
		}
		return waitIf(ctx, log, *wait)
	}
	if *wait && !*cleanup {
		return fmt.Errorf("--wait is only for --cleanup and --remove-kube-proxy-rules")
	}
	if *cleanup {
		if err := app.Cleanup(ctx, app.CleanupConfig{CachePath: *cachePath, SysctlRecord: ctSettings.Record,
			NetNSPath: *netns, Logger: log}); err != nil {
			return err
		}
		log.Info("node cleaned up")
		return waitIf(ctx, log, *wait)
	}

	var targets []string
	for _, t := range strings.Split(*controlPlanes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 && *cpService == "" {
		return fmt.Errorf("--control-plane or --control-plane-service is required")
	}
	if *hcAddress != "" && net.ParseIP(*hcAddress) == nil {
		return fmt.Errorf("--health-check-address %q is not an IP address", *hcAddress)
	}
	if *nodeName == "" {
		return fmt.Errorf("--node-name is required (no $NODE_NAME and no hostname)")
	}

	table, err := localFlags.TableOptions()
	if err != nil {
		return err
	}
	table.LocalhostNodePorts = *localhostNodePorts
	cfg := app.Config{
		NodeName:            *nodeName,
		ControlPlanes:       targets,
		ControlPlaneService: *cpService,
		CachePath:           *cachePath,
		NetNSPath:           *netns,
		HealthCheckAddress:  *hcAddress,
		ResyncPeriod:        *resyncPeriod,
		HealthTimeout:       *healthTimeout,
		MaxCacheAge:         *maxCacheAge,
		Conntrack:           ctSettings,
		Table:               table,
		Logger:              log,
	}
	cfg.Configuration = effective
	cfg.AcceptBehindAfter = *acceptBehindAfter
	needCA := !*plaintext && *caFile == ""
	if *cpService != "" || needCA {
		// The API server is used only to find the control plane and its CA.
		var rc *rest.Config
		var err error
		if *kubeconfig == "" {
			rc, err = rest.InClusterConfig()
		} else {
			rc, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
		}
		if err != nil {
			return fmt.Errorf("kubernetes client configuration: %w", err)
		}
		if *apiServer == "" && strings.Contains(rc.Host, placeholderServer) {
			return fmt.Errorf("kubeconfig %s: the API server address %s is the placeholder deploy/base ships: set the real address in the ConfigMap doorman-system/doorman-kubeconfig (see deploy/README.md)", *kubeconfig, rc.Host)
		}
		if *apiServer != "" {
			rc.Host = *apiServer
		} else if *kubeconfig == "" {
			log.Warn("API server reached through the kubernetes Service VIP: a node without doorman's rules cannot find the control plane; pass --apiserver", "host", rc.Host)
		}
		if cfg.Kubernetes, err = kube.New(rc); err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
	}
	creds := credentials.Config{
		Insecure: *plaintext, TokenFile: *tokenFile, CAFile: *caFile, ServerName: *serverName,
		Client: cfg.Kubernetes, Logger: log.Named("credentials"),
	}
	if needCA {
		creds.CAConfigMap = *caConfigMap
	}
	if cfg.DialOptions, err = credentials.DialOptions(creds); err != nil {
		return err
	}
	if *resyncPeriod < 0 {
		return fmt.Errorf("--resync-period must not be negative")
	}
	if *healthTimeout <= 0 {
		return fmt.Errorf("--healthz-timeout must be positive")
	}
	if *maxCacheAge < 0 {
		return fmt.Errorf("--max-cache-age must not be negative")
	}
	if *inspectSocket != "" {
		lis, err := inspect.ListenSocket(*inspectSocket)
		if err != nil {
			return err
		}
		cfg.InspectListeners = append(cfg.InspectListeners, lis)
	}
	if lis, err := listen(*inspectListen); err != nil {
		return err
	} else if lis != nil {
		cfg.InspectListeners = append(cfg.InspectListeners, lis)
	}
	if cfg.HealthListener, err = listen(*healthListen); err != nil {
		return err
	}
	if cfg.MetricsListener, err = listen(*metricsListen); err != nil {
		return err
	}

	return app.Run(ctx, cfg)
}

// waitIf, for --wait, stays until SIGINT or SIGTERM.
func waitIf(ctx context.Context, log hclog.Logger, wait bool) error {
	if wait {
		log.Info("waiting for a signal (--wait)")
		<-ctx.Done()
	}
	return nil
}

// recordPath is --sysctl-record, by default beside the cache.
func recordPath(flagValue, cachePath string) string {
	if flagValue != "" || cachePath == "" {
		return flagValue
	}
	return filepath.Join(filepath.Dir(cachePath), conntrack.RecordFile)
}

// placeholderServer is the host deploy/base puts in the ConfigMap
// doorman-kubeconfig for the one edit every install needs; left unedited,
// the agent would retry an address that cannot resolve forever.
const placeholderServer = "API_SERVER_HOST"

func listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return lis, nil
}
