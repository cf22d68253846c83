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
	"google.golang.org/grpc"

	"github.com/doorman-proxy/doorman/internal/config"
	"github.com/doorman-proxy/doorman/internal/kubeconfig"
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
	f := registerFlags(flag)
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
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	log.Info("doorman nodeagent", "version", version.Get().String())
	log.Info("configuration", effective.KeyValues()...)

	// SIGINT and SIGTERM stop the agent (the kernel keeps doorman's rules)
	// and a clean-up that waits.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if done, err := f.runAction(ctx, log); done {
		return err
	}
	cfg, err := f.appConfig(log, effective)
	if err != nil {
		return err
	}
	return app.Run(ctx, cfg)
}

// flags are the agent's command line.
type flags struct {
	nodeName, controlPlanes, cpService, kubeconfig, apiServer string
	hcAddress, cachePath, inspectSocket, inspectListen        string
	healthListen, metricsListen, netns, logLevel              string
	healthTimeout, maxCacheAge, resyncPeriod                  time.Duration
	plaintext                                                 bool
	tokenFile, caFile, caConfigMap, serverName                string
	cleanup, wait, rmKubeProxy, ctOnly                        bool
	conntrack                                                 conntrack.Settings
	sysctlRecord                                              string
	local                                                     app.LocalTrafficFlags
	localhostNodePorts                                        bool
	acceptBehindAfter                                         time.Duration
}

// registerFlags registers every setting of the agent and the one-time
// actions.
func registerFlags(flag *flag.FlagSet) *flags {
	f := &flags{}
	defaultNode := os.Getenv("NODE_NAME")
	if defaultNode == "" {
		defaultNode, _ = os.Hostname()
	}
	flag.StringVar(&f.nodeName, "node-name", defaultNode, "this node's name (default: $NODE_NAME, then the hostname)")
	flag.StringVar(&f.controlPlanes, "control-plane", "", "control plane gRPC addresses, host:port, comma-separated; tried in turn")
	flag.StringVar(&f.cpService, "control-plane-service", "", "control plane Service as NAMESPACE/NAME:PORTNAME (e.g. doorman-system/doorman-controlplane:grpc): its ready endpoints, from the API server's EndpointSlices, are tried in turn after --control-plane")
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file for --control-plane-service (default: in-cluster configuration)")
	flag.StringVar(&f.apiServer, "apiserver", "", "API server URL for --control-plane-service, overriding the configuration's; in-cluster configuration points at the kubernetes Service VIP, which doorman itself programs, so a fresh node needs a real address here (or in --kubeconfig)")
	flag.StringVar(&f.hcAddress, "health-check-address", "", "IP the healthCheckNodePort servers listen on (\"\" = every address)")
	flag.StringVar(&f.cachePath, "cache", "/var/lib/doorman/cache.db", "cache file of the last applied view (\"\" = none)")
	flag.StringVar(&f.inspectSocket, "inspect-socket", "/run/doorman/inspect.sock", "unix socket of the local Inspect gRPC service, mode 0600 (root only); grpcurl -plaintext -unix PATH … (\"\" = off)")
	flag.StringVar(&f.inspectListen, "inspect-listen", "", "TCP address of the Inspect gRPC service too, e.g. 127.0.0.1:9410: unauthenticated, and it shows the whole view, to anyone who can connect (\"\" = off)")
	flag.StringVar(&f.healthListen, "health-listen", ":10256", "address of /healthz and /livez (\"\" = off)")
	flag.DurationVar(&f.healthTimeout, "healthz-timeout", healthcheck.DefaultTimeout, "/healthz and /livez answer 503 once an update from the control plane (or a drift repair) has waited this long for the kernel; kube-proxy's is twice its 30s sync period")
	flag.DurationVar(&f.maxCacheAge, "max-cache-age", 24*time.Hour, "oldest cached view programmed at start-up, counted from when a control plane last confirmed it: an older one may send traffic to Pod IPs reused since, so the agent waits for a control plane instead (0 = any age)")
	flag.StringVar(&f.metricsListen, "metrics-bind-address", "127.0.0.1:10249", "address of /metrics (Prometheus) and /proxyMode, as kube-proxy's (\"\" = off)")
	flag.DurationVar(&f.resyncPeriod, "resync-period", 5*time.Minute, "period of the backstop full reconcile of the kernel table, on top of the event monitor (0 = off)")
	flag.StringVar(&f.netns, "netns", "", "network namespace to program, e.g. /run/netns/node1 (\"\" = the agent's own)")
	flag.BoolVar(&f.plaintext, "insecure", false, "talk to the control plane over plaintext gRPC (local development only)")
	flag.StringVar(&f.tokenFile, "token-file", credentials.DefaultTokenFile, "projected ServiceAccount token (audience doorman) shown to the control plane, re-read on every connect")
	flag.StringVar(&f.caFile, "ca-file", "", "CA bundle (PEM) the control plane's certificate must chain to (default: read --ca-configmap through the API server)")
	flag.StringVar(&f.caConfigMap, "ca-configmap", credentials.DefaultCAConfigMap, "NAMESPACE/NAME of the ConfigMap whose ca.crt the control plane publishes, read when --ca-file is not set")
	flag.StringVar(&f.serverName, "server-name", credentials.DefaultServerName, "name the control plane's certificate must carry (\"\" = the dialled host)")
	flag.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	flag.BoolVar(&f.cleanup, "cleanup", false, "remove everything the agent put on this node (the nftables table inet doorman, the --cache file) and exit; waits for a running agent to exit first (it holds the cache); for uninstalling, like kube-proxy's --cleanup")
	flag.BoolVar(&f.wait, "wait", false, "with --cleanup: after cleaning up, stay running until SIGTERM (the main container of a clean-up DaemonSet, so its rollout shows every node done)")
	f.registerConntrackFlags(flag)
	flag.BoolVar(&f.rmKubeProxy, "remove-kube-proxy-rules", false, "remove the rules a stopped kube-proxy left on this node (nftables tables ip/ip6 kube-proxy; its KUBE-* chains, and the jumps to them, in iptables-nft's nat, filter and mangle tables) and exit; legacy iptables rules stay: run kube-proxy --cleanup for those")
	flag.BoolVar(&f.ctOnly, "conntrack-sysctls-only", false, "set the --conntrack-* sysctls in this network namespace and exit (for a privileged init container: the agent's own container cannot write /proc/sys)")
	f.registerLocalTrafficFlags(flag)
	// Freshness of the control planes' updates.
	flag.DurationVar(&f.acceptBehindAfter, "accept-behind-after", stream.DefaultAcceptBehindAfter,
		"updates behind what this node applied (a control plane whose API-server watch fell behind) are refused; once refusals have lasted this long with nothing accepted, every control plane is behind (etcd restored from a backup) and the next is accepted, logged as an error (negative: never)")
	return f
}

func (f *flags) registerConntrackFlags(flag *flag.FlagSet) {
	ctDefaults := conntrack.DefaultSettings()
	flag.IntVar(&f.conntrack.MaxPerCore, "conntrack-max-per-core", ctDefaults.MaxPerCore, "raise nf_conntrack_max to this many entries per CPU, at least --conntrack-min (0 = leave it; never lowered; settable only in the host's network namespace)")
	flag.IntVar(&f.conntrack.Min, "conntrack-min", ctDefaults.Min, "the least nf_conntrack_max --conntrack-max-per-core raises it to")
	flag.DurationVar(&f.conntrack.TCPEstablished, "conntrack-tcp-timeout-established", ctDefaults.TCPEstablished, "idle timeout of established TCP conntrack entries (0 = leave it)")
	flag.DurationVar(&f.conntrack.TCPCloseWait, "conntrack-tcp-timeout-close-wait", ctDefaults.TCPCloseWait, "timeout of TCP conntrack entries in CLOSE_WAIT (0 = leave it)")
	flag.BoolVar(&f.conntrack.TCPBeLiberal, "conntrack-tcp-be-liberal", ctDefaults.TCPBeLiberal, "set nf_conntrack_tcp_be_liberal: out-of-window TCP packets are not marked invalid (false = leave it)")
	flag.DurationVar(&f.conntrack.UDP, "conntrack-udp-timeout", ctDefaults.UDP, "timeout of unreplied UDP conntrack entries (0 = leave it)")
	flag.DurationVar(&f.conntrack.UDPStream, "conntrack-udp-timeout-stream", ctDefaults.UDPStream, "timeout of replied UDP conntrack entries (0 = leave it)")
	flag.StringVar(&f.sysctlRecord, "sysctl-record", "", "file recording each sysctl the agent changes and its value before, for --cleanup to put back (\"\" = "+conntrack.RecordFile+" beside --cache, /var/lib/doorman/"+conntrack.RecordFile+" by default)")
}

// registerLocalTrafficFlags registers local traffic detection and
// ClusterIP masquerade, as kube-proxy's, and NodePorts on 127.0.0.0/8 for
// the node's own processes.
func (f *flags) registerLocalTrafficFlags(flag *flag.FlagSet) {
	flag.StringVar(&f.local.DetectLocalMode, "detect-local-mode", "",
		"how traffic from a local Pod is told from other traffic, for externalTrafficPolicy Local (Pods count as inside the cluster) and ClusterIP masquerade (other sources are masqueraded): NodeCIDR (the source is in the node's spec.podCIDRs), ClusterCIDR (in --cluster-cidr), BridgeInterface (it arrived on --pod-bridge-interface) or InterfaceNamePrefix (on an interface named --pod-interface-name-prefix*). Unset: the node's spec.podCIDRs decide externalTrafficPolicy Local's split and no ClusterIP traffic is masqueraded, as kube-proxy with its default ClusterCIDR and no --cluster-cidr; so a CNI whose Pod addresses are outside spec.podCIDRs keeps its Pods' source addresses")
	flag.StringVar(&f.local.ClusterCIDR, "cluster-cidr", "",
		"the cluster's Pod CIDRs, comma-separated, at most one per family, for --detect-local-mode=ClusterCIDR (otherwise unused)")
	flag.StringVar(&f.local.PodBridgeInterface, "pod-bridge-interface", "",
		"the Pods' bridge, for --detect-local-mode=BridgeInterface: traffic arriving on it is from a local Pod")
	flag.StringVar(&f.local.PodInterfaceNamePrefix, "pod-interface-name-prefix", "",
		"a name prefix of the Pods' interfaces, for --detect-local-mode=InterfaceNamePrefix: traffic arriving on an interface whose name starts with it is from a local Pod")
	flag.BoolVar(&f.local.MasqueradeAll, "masquerade-all", false,
		"masquerade all traffic to ClusterIPs, not only what is not from a local Pod (some CNI plugins need it)")
	flag.BoolVar(&f.localhostNodePorts, "localhost-nodeports", false,
		"serve NodePorts on 127.0.0.0/8 to the node's own processes (IPv4 only), as kube-proxy's --iptables-localhost-nodeports: sets net.ipv4.conf.all.route_localnet=1 with the --conntrack-* sysctls (pass it to the --conntrack-sysctls-only init container too); packets to 127.0.0.0/8 from other hosts are dropped whether or not it is set (CVE-2020-8558)")
}

func newLogger(logLevel string) (hclog.Logger, error) {
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		return nil, fmt.Errorf("unknown --log-level %q", logLevel)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "nodeagent", Level: level}), nil
}

// conntrackSettings are the --conntrack-* sysctls, --sysctl-record and
// route_localnet for --localhost-nodeports.
func (f *flags) conntrackSettings() conntrack.Settings {
	s := f.conntrack
	s.Record = recordPath(f.sysctlRecord, f.cachePath)
	s.RouteLocalnet = f.localhostNodePorts
	return s
}

// runAction runs the one-time action the flags ask for, if any
// (--conntrack-sysctls-only, --remove-kube-proxy-rules, --cleanup), and
// reports whether it did, or refused the flags, so the agent must not
// start.
func (f *flags) runAction(ctx context.Context, log hclog.Logger) (done bool, err error) {
	if f.ctOnly {
		_, err := conntrack.Apply(log, f.netns, runtime.NumCPU(), f.conntrackSettings())
		return true, err
	}
	if f.rmKubeProxy {
		if f.cleanup {
			return true, fmt.Errorf("--remove-kube-proxy-rules and --cleanup are separate runs")
		}
		if _, err := kubeproxy.Remove(log, f.netns); err != nil {
			return true, err
		}
		return true, waitIf(ctx, log, f.wait)
	}
	if f.wait && !f.cleanup {
		return true, fmt.Errorf("--wait is only for --cleanup and --remove-kube-proxy-rules")
	}
	if f.cleanup {
		if err := app.Cleanup(ctx, app.CleanupConfig{CachePath: f.cachePath, SysctlRecord: f.conntrackSettings().Record,
			NetNSPath: f.netns, Logger: log}); err != nil {
			return true, err
		}
		log.Info("node cleaned up")
		return true, waitIf(ctx, log, f.wait)
	}
	return false, nil
}

// appConfig checks the flags and makes the agent's configuration: its
// Kubernetes client, credentials and listeners.
func (f *flags) appConfig(log hclog.Logger, effective *config.Effective) (app.Config, error) {
	targets, err := f.checkNode()
	if err != nil {
		return app.Config{}, err
	}
	table, err := f.local.TableOptions()
	if err != nil {
		return app.Config{}, err
	}
	table.LocalhostNodePorts = f.localhostNodePorts
	cfg := app.Config{
		NodeName:            f.nodeName,
		ControlPlanes:       targets,
		ControlPlaneService: f.cpService,
		CachePath:           f.cachePath,
		NetNSPath:           f.netns,
		HealthCheckAddress:  f.hcAddress,
		ResyncPeriod:        f.resyncPeriod,
		HealthTimeout:       f.healthTimeout,
		MaxCacheAge:         f.maxCacheAge,
		Conntrack:           f.conntrackSettings(),
		Table:               table,
		Logger:              log,
	}
	cfg.Configuration = effective
	cfg.AcceptBehindAfter = f.acceptBehindAfter
	needCA := !f.plaintext && f.caFile == ""
	if f.cpService != "" || needCA {
		// The API server is used only to find the control plane and its CA.
		if cfg.Kubernetes, err = f.kubernetesClient(log); err != nil {
			return app.Config{}, err
		}
	}
	if cfg.DialOptions, err = f.dialOptions(cfg.Kubernetes, needCA, log); err != nil {
		return app.Config{}, err
	}
	if err := f.checkPeriods(); err != nil {
		return app.Config{}, err
	}
	if err := f.openListeners(&cfg); err != nil {
		return app.Config{}, err
	}
	return cfg, nil
}

// checkNode checks the control plane, node and health check flags and
// returns the --control-plane addresses.
func (f *flags) checkNode() ([]string, error) {
	var targets []string
	for _, t := range strings.Split(f.controlPlanes, ",") {
		if t = strings.TrimSpace(t); t != "" {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 && f.cpService == "" {
		return nil, fmt.Errorf("--control-plane or --control-plane-service is required")
	}
	if f.hcAddress != "" && net.ParseIP(f.hcAddress) == nil {
		return nil, fmt.Errorf("--health-check-address %q is not an IP address", f.hcAddress)
	}
	if f.nodeName == "" {
		return nil, fmt.Errorf("--node-name is required (no $NODE_NAME and no hostname)")
	}
	return targets, nil
}

func (f *flags) kubernetesClient(log hclog.Logger) (kube.Interface, error) {
	rc, err := kubeconfig.Load(f.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	if f.apiServer == "" && strings.Contains(rc.Host, placeholderServer) {
		return nil, fmt.Errorf("kubeconfig %s: the API server address %s is the placeholder deploy/base ships: set the real address in the ConfigMap doorman-system/doorman-kubeconfig (see deploy/README.md)", f.kubeconfig, rc.Host)
	}
	if f.apiServer != "" {
		rc.Host = f.apiServer
	} else if f.kubeconfig == "" {
		log.Warn("API server reached through the kubernetes Service VIP: a node without doorman's rules cannot find the control plane; pass --apiserver", "host", rc.Host)
	}
	client, err := kube.New(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return client, nil
}

// dialOptions are the gRPC credentials towards the control plane; needCA:
// its CA is read from --ca-configmap through client.
func (f *flags) dialOptions(client kube.Interface, needCA bool, log hclog.Logger) ([]grpc.DialOption, error) {
	creds := credentials.Config{
		Insecure: f.plaintext, TokenFile: f.tokenFile, CAFile: f.caFile, ServerName: f.serverName,
		Client: client, Logger: log.Named("credentials"),
	}
	if needCA {
		creds.CAConfigMap = f.caConfigMap
	}
	return credentials.DialOptions(creds)
}

func (f *flags) checkPeriods() error {
	if f.resyncPeriod < 0 {
		return fmt.Errorf("--resync-period must not be negative")
	}
	if f.healthTimeout <= 0 {
		return fmt.Errorf("--healthz-timeout must be positive")
	}
	if f.maxCacheAge < 0 {
		return fmt.Errorf("--max-cache-age must not be negative")
	}
	return nil
}

// openListeners opens the Inspect, health and metrics listeners into cfg.
func (f *flags) openListeners(cfg *app.Config) error {
	if f.inspectSocket != "" {
		lis, err := inspect.ListenSocket(f.inspectSocket)
		if err != nil {
			return err
		}
		cfg.InspectListeners = append(cfg.InspectListeners, lis)
	}
	if lis, err := listen(f.inspectListen); err != nil {
		return err
	} else if lis != nil {
		cfg.InspectListeners = append(cfg.InspectListeners, lis)
	}
	var err error
	if cfg.HealthListener, err = listen(f.healthListen); err != nil {
		return err
	}
	if cfg.MetricsListener, err = listen(f.metricsListen); err != nil {
		return err
	}
	return nil
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
