package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Proxy says what runs on each node to implement Services.
type Proxy string

const (
	ProxyDoorman   Proxy = "doorman"    // doorman's control plane + a node agent per node
	ProxyKubeProxy Proxy = "kube-proxy" // upstream kube-proxy in nftables mode, the baseline
	ProxyNone      Proxy = "none"       // nothing: Services are not reachable
)

// Fixed addressing of every cluster (inside its own namespaces only). The
// cluster is dual-stack, IPv4 primary: every range has an IPv6 twin.
const (
	ServiceCIDR      = "10.96.0.0/12"
	ServiceCIDR6     = "fd00:10:96::/108"
	PodCIDR          = "10.244.0.0/16"
	PodCIDR6         = "fd00:10:244::/56" // node n: fd00:10:244:<n hex>::/64
	NodeNetwork      = "10.250.0.0/24"
	NodeNetwork6     = "fd00:10:250::/64"
	GatewayIP        = "10.250.0.1"       // the bridge in <prefix>-net; relays listen here
	GatewayIP6       = "fd00:10:250::1"   // the bridge's IPv6 address
	ExternalIP       = "10.250.0.100"     // the external client namespace
	ExternalIP6      = "fd00:10:250::100" // the external client's IPv6 address
	podGatewayIP6    = "fe80::1"          // each node's end of every Pod veth
	ControlPlanePort = 9400               // doorman control plane gRPC, on GatewayIP
	AgentHealthPort  = 10256
)

// Config of a cluster. Zero values are defaults.
type Config struct {
	// Nodes is the number of nodes (default 3).
	Nodes int
	// Prefix names every network namespace "<prefix>-…" (default
	// "dm" + 4 random hex digits). Start removes namespaces a killed run
	// with the same prefix left behind.
	Prefix string
	// K8sBinDir holds etcd, kube-apiserver, kube-controller-manager and
	// kube-proxy (see e2e/hack/build-k8s.sh).
	K8sBinDir string
	// DoormanBinDir holds controlplane and nodeagent; needed for
	// ProxyDoorman.
	DoormanBinDir string
	// Proxy is what implements Services on the nodes (default doorman).
	Proxy Proxy
	// WorkDir keeps certificates, kubeconfigs, etcd data and logs
	// (default: a new temporary directory, removed by Close unless
	// KeepWorkDir).
	WorkDir     string
	KeepWorkDir bool
	// ControllerArgs are extra kube-controller-manager flags.
	ControllerArgs []string
	// Controllers replaces the controllers kube-controller-manager runs
	// (empty: those the e2e suites need, DefaultControllers).
	Controllers []string
	// Secure runs doorman's gRPC as deploy/ does: the control plane with
	// TLS from the CA it keeps in doorman-system and token checks, each
	// agent with a token bound to a Pod on its node (TokenRequest, as the
	// kubelet projects it) and that CA. false = --insecure on both.
	Secure bool
	// AgentArgs are extra node agent flags.
	AgentArgs []string
	// ControlPlaneArgs are extra doorman control plane flags.
	ControlPlaneArgs []string
	Logger           hclog.Logger
}

// Node is one simulated node.
type Node struct {
	Name     string
	NetNS    string // network namespace the node's processes run in
	IP       string // InternalIP on the node network
	IP6      string // IPv6 InternalIP on the node network
	PodCIDR  string
	PodCIDR6 string // IPv6 Pod CIDR, a /64
	Zone     string
	index    int // 1-based
}

// DefaultControllers are the kube-controller-manager controllers a cluster
// runs unless Config.Controllers says otherwise.
var DefaultControllers = []string{
	"endpointslice-controller", "endpointslice-mirroring-controller",
	"replicaset-controller", "deployment-controller",
	"serviceaccount-controller", "serviceaccount-token-controller",
	"namespace-controller", "garbage-collector-controller",
}

// Cluster is a running cluster. Close tears it down.
type Cluster struct {
	cfg    Config
	log    hclog.Logger
	work   string
	logDir string
	pki    *pki

	etcdURL    string
	apiPort    int
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface

	cpGRPC, cpHTTP int // doorman control plane, on loopback

	netNS, extNS string
	nodes        []Node

	mu     sync.Mutex
	procs  []*proc // started in order; stopped in reverse
	agents map[string]*proc
	relays []*relay
	cancel context.CancelFunc
	bg     sync.WaitGroup
	sim    *simulator
	closed bool
}

// Start brings a cluster up. On error everything started so far is torn
// down.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg, err = withDefaults(cfg); err != nil {
		return nil, err
	}
	if err := checkBinaries(cfg); err != nil {
		return nil, err
	}
	c, err := newCluster(cfg)
	if err != nil {
		return nil, err
	}
	bgctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()

	if err := Cleanup(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("remove leftovers of %s: %w", cfg.Prefix, err)
	}
	t0 := time.Now()
	if err := c.startNetwork(); err != nil {
		return nil, fmt.Errorf("node network: %w", err)
	}
	c.log.Info("node network up", "nodes", len(c.nodes), "elapsed", time.Since(t0).Round(time.Millisecond))
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	if err := c.startNodes(ctx, bgctx); err != nil {
		return nil, err
	}
	if err := c.startProxy(ctx); err != nil {
		return nil, err
	}
	c.log.Info("cluster up", "prefix", cfg.Prefix, "kubeconfig", c.kubeconfig, "elapsed", time.Since(t0).Round(time.Millisecond))
	return c, nil
}

// withDefaults checks cfg and fills in its defaults.
func withDefaults(cfg Config) (Config, error) {
	if os.Geteuid() != 0 {
		return cfg, errors.New("the netns cluster needs root (network namespaces)")
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes > 200 {
		return cfg, fmt.Errorf("%d nodes: at most 200", cfg.Nodes)
	}
	if cfg.Proxy == "" {
		cfg.Proxy = ProxyDoorman
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Prefix == "" {
		var b [2]byte
		_, _ = rand.Read(b[:])
		cfg.Prefix = "dm" + hex.EncodeToString(b[:])
	}
	if cfg.K8sBinDir == "" {
		return cfg, errors.New("K8sBinDir is required (run e2e/hack/build-k8s.sh)")
	}
	return cfg, nil
}

// checkBinaries checks that the binaries cfg.Proxy needs are there.
func checkBinaries(cfg Config) error {
	need := []string{"etcd", "kube-apiserver", "kube-controller-manager"}
	if cfg.Proxy == ProxyKubeProxy {
		need = append(need, "kube-proxy")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(cfg.K8sBinDir, b)); err != nil {
			return fmt.Errorf("%s missing in %s (run e2e/hack/build-k8s.sh): %w", b, cfg.K8sBinDir, err)
		}
	}
	if cfg.Proxy == ProxyDoorman {
		for _, b := range []string{"controlplane", "nodeagent"} {
			if _, err := os.Stat(filepath.Join(cfg.DoormanBinDir, b)); err != nil {
				return fmt.Errorf("%s missing in %q (go build -o DIR ./controlplane ./nodeagent): %w", b, cfg.DoormanBinDir, err)
			}
		}
	}
	return nil
}

// newCluster makes the cluster's work and log directories.
func newCluster(cfg Config) (*Cluster, error) {
	c := &Cluster{cfg: cfg, log: cfg.Logger.Named("cluster"), agents: map[string]*proc{}}
	c.work = cfg.WorkDir
	if c.work == "" {
		var err error
		if c.work, err = os.MkdirTemp("", "doorman-cluster-"); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
	}
	c.logDir = filepath.Join(c.work, "logs")
	if err := os.MkdirAll(c.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	return c, nil
}

// startNodes registers the nodes and keeps them alive (heartbeats, the
// kubelet's part) until bgctx ends.
func (c *Cluster) startNodes(ctx, bgctx context.Context) error {
	if err := c.registerNodes(ctx); err != nil {
		return fmt.Errorf("register nodes: %w", err)
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		c.heartbeat(bgctx)
	}()
	c.sim = newSimulator(c, c.log.Named("sim"))
	if err := c.sim.start(bgctx); err != nil {
		return fmt.Errorf("node simulator: %w", err)
	}
	return nil
}

// startProxy starts what implements Services on the nodes.
func (c *Cluster) startProxy(ctx context.Context) error {
	switch c.cfg.Proxy {
	case ProxyDoorman:
		return c.startDoorman(ctx)
	case ProxyKubeProxy:
		return c.startKubeProxy(ctx)
	case ProxyNone:
		return nil
	}
	return fmt.Errorf("unknown proxy %q", c.cfg.Proxy)
}

// Cleanup removes the network namespaces "<prefix>-…" a previous run left
// behind (its processes died with it).
func Cleanup(prefix string) error {
	names, err := listNetNS(prefix + "-")
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		if err := delNetNS(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startNetwork makes the gateway namespace with the node network's
// bridge, the external client's namespace and a namespace per node, routed
// to every other node's Pods.
func (c *Cluster) startNetwork() error {
	p := c.cfg.Prefix
	c.netNS, c.extNS = p+"-net", p+"-ext"
	netl, err := startGateway(c.netNS)
	if err != nil {
		return err
	}
	defer netl.Close()
	ext, err := attach(netl, c.extNS, "ext", ExternalIP, ExternalIP6, noDADSysctls)
	if err != nil {
		return err
	}
	ext.Close()

	c.nodes = append(c.nodes, planNodes(p, c.cfg.Nodes)...)
	for _, n := range c.nodes {
		if err := c.attachNode(netl, n); err != nil {
			return err
		}
	}
	return nil
}

// startGateway makes the gateway namespace: the bridge br0 with
// GatewayIP and GatewayIP6.
func startGateway(name string) (*nsLink, error) {
	if err := addNetNS(name); err != nil {
		return nil, err
	}
	netl, err := openNS(name)
	if err != nil {
		return nil, err
	}
	for _, step := range []func() error{
		func() error { return setSysctls(name, hostSysctls...) },
		func() error { return netl.up("lo") },
		func() error { return netl.bridge("br0") },
		func() error { return netl.addAddr("br0", GatewayIP+"/24") },
		func() error { return netl.addAddr("br0", GatewayIP6+"/64") },
	} {
		if err := step(); err != nil {
			netl.Close()
			return nil, err
		}
	}
	return netl, nil
}

// attach makes namespace nsName and plugs its eth0, with addresses ip and
// ip6, into the gateway's bridge through hostSide, routed by default to
// the gateway.
func attach(netl *nsLink, nsName, hostSide, ip, ip6 string, sysctls []string) (*nsLink, error) {
	if err := addNetNS(nsName); err != nil {
		return nil, err
	}
	if err := setSysctls(nsName, sysctls...); err != nil {
		return nil, err
	}
	l, err := openNS(nsName)
	if err != nil {
		return nil, err
	}
	if err := netl.veth(hostSide, "br0", l, "eth0"); err != nil {
		l.Close()
		return nil, err
	}
	for _, step := range []func() error{
		func() error { return l.up("lo") },
		func() error { return l.up("eth0") },
		func() error { return l.addAddr("eth0", ip+"/24") },
		func() error { return l.addAddr("eth0", ip6+"/64") },
		func() error { return l.route("default", GatewayIP, "eth0", false) },
		func() error { return l.route("default", GatewayIP6, "eth0", false) },
	} {
		if err := step(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// planNodes names and addresses n nodes, spread over three zones.
func planNodes(prefix string, n int) []Node {
	zones := []string{"zone-a", "zone-b", "zone-c"}
	nodes := make([]Node, 0, n)
	for i := 1; i <= n; i++ {
		nodes = append(nodes, Node{
			Name:     fmt.Sprintf("node%d", i),
			NetNS:    fmt.Sprintf("%s-node%d", prefix, i),
			IP:       nodeIP(i),
			IP6:      nodeIP6(i),
			PodCIDR:  fmt.Sprintf("10.244.%d.0/24", i),
			PodCIDR6: fmt.Sprintf("fd00:10:244:%x::/64", i),
			Zone:     zones[(i-1)%len(zones)],
			index:    i,
		})
	}
	return nodes
}

// attachNode makes node n's namespace, routes the other nodes' Pod CIDRs
// from it, and n's Pod CIDRs from the gateway (debugging, and the API
// server's replies to Pods through the relay).
func (c *Cluster) attachNode(netl *nsLink, n Node) error {
	l, err := attach(netl, n.NetNS, "n"+strconv.Itoa(n.index), n.IP, n.IP6, hostSysctls)
	if err != nil {
		return err
	}
	defer l.Close()
	for _, o := range c.nodes {
		if o.index == n.index {
			continue
		}
		if err := l.route(o.PodCIDR, o.IP, "eth0", false); err != nil {
			return err
		}
		if err := l.route(o.PodCIDR6, o.IP6, "eth0", false); err != nil {
			return err
		}
	}
	if err := netl.route(n.PodCIDR, n.IP, "br0", false); err != nil {
		return err
	}
	return netl.route(n.PodCIDR6, n.IP6, "br0", false)
}

func nodeIP(i int) string { return fmt.Sprintf("10.250.0.%d", 10+i) }

// nodeIP6 mirrors nodeIP's digits: node1 is fd00:10:250::11.
func nodeIP6(i int) string { return fmt.Sprintf("fd00:10:250::%d", 10+i) }

func (c *Cluster) addProc(p *proc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.cfg.K8sBinDir, name) }

// startControlPlane starts etcd, kube-apiserver (reached from the nodes
// through a relay on GatewayIP) and kube-controller-manager, each waited
// for.
func (c *Cluster) startControlPlane(ctx context.Context) error {
	ports, err := freePorts(5)
	if err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	etcdClient, etcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]
	c.apiPort = apiPort
	if err := c.writeCredentials(apiPort); err != nil {
		return err
	}
	if err := c.startEtcd(ctx, etcdClient, etcdPeer); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, apiPort); err != nil {
		return err
	}
	return c.startControllerManager(ctx, kcmPort)
}

// writeCredentials makes the cluster's certificates, the admin kubeconfig
// and the nodes' (the API server through the gateway relay).
func (c *Cluster) writeCredentials(apiPort int) error {
	var err error
	c.pki, err = newPKI(filepath.Join(c.work, "pki"), []net.IP{
		net.ParseIP("127.0.0.1"), net.ParseIP(GatewayIP), net.ParseIP("10.96.0.1"),
	})
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	c.kubeconfig = filepath.Join(c.work, "admin.kubeconfig")
	if err := c.pki.kubeconfig(c.kubeconfig, "https://"+hostPort("127.0.0.1", apiPort)); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if err := c.pki.kubeconfig(c.NodeKubeconfig(), "https://"+hostPort(GatewayIP, apiPort)); err != nil {
		return fmt.Errorf("node kubeconfig: %w", err)
	}
	return nil
}

func (c *Cluster) startEtcd(ctx context.Context, clientPort, peerPort int) error {
	t := time.Now()
	etcdURL := "http://" + hostPort("127.0.0.1", clientPort)
	c.etcdURL = etcdURL
	peerURL := "http://" + hostPort("127.0.0.1", peerPort)
	etcd, err := startProc(c.logDir, "etcd", "", c.bin("etcd"),
		"--name=default",
		"--data-dir="+filepath.Join(c.work, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync=true",
		"--quota-backend-bytes=8589934592",
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	c.addProc(etcd)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, etcd, etcdURL+"/health", nil); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	c.log.Info("etcd ready", "url", etcdURL, "elapsed", time.Since(t).Round(time.Millisecond))
	return nil
}

// startAPIServer starts kube-apiserver, makes the cluster's client, waits
// for it to be ready and relays GatewayIP:apiPort to it.
func (c *Cluster) startAPIServer(ctx context.Context, apiPort int) error {
	t := time.Now()
	api, err := startProc(c.logDir, "kube-apiserver", "", c.bin("kube-apiserver"),
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address="+GatewayIP,
		"--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+c.pki.ServingCertFile,
		"--tls-private-key-file="+c.pki.ServingKeyFile,
		"--client-ca-file="+c.pki.CAFile,
		"--service-account-key-file="+c.pki.SAPubFile,
		"--service-account-signing-key-file="+c.pki.SAKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+ServiceCIDR+","+ServiceCIDR6,
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--profiling=false",
		"--max-requests-inflight=1000",
		"--max-mutating-requests-inflight=500",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.addProc(api)
	c.rest, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	c.rest.QPS, c.rest.Burst = 500, 1000
	if c.client, err = kubernetes.NewForConfig(c.rest); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := c.waitAPIServer(wctx, api); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	c.log.Info("kube-apiserver ready", "url", c.rest.Host, "elapsed", time.Since(t).Round(time.Millisecond))
	r, err := startRelay(c.netNS, hostPort(GatewayIP, apiPort), hostPort("127.0.0.1", apiPort))
	if err != nil {
		return fmt.Errorf("api server relay: %w", err)
	}
	c.relays = append(c.relays, r)
	return nil
}

func (c *Cluster) startControllerManager(ctx context.Context, port int) error {
	t := time.Now()
	controllers := c.cfg.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	args := []string{
		"--kubeconfig=" + c.kubeconfig,
		"--authentication-kubeconfig=" + c.kubeconfig,
		"--authorization-kubeconfig=" + c.kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--leader-elect=false",
		"--controllers=" + strings.Join(controllers, ","),
		"--service-account-private-key-file=" + c.pki.SAKeyFile,
		"--root-ca-file=" + c.pki.CAFile,
		"--use-service-account-credentials=false",
		"--cluster-cidr=" + PodCIDR + "," + PodCIDR6,
		"--service-cluster-ip-range=" + ServiceCIDR + "," + ServiceCIDR6,
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
		"--concurrent-service-endpoint-syncs=20",
		"--concurrent-replicaset-syncs=10",
		"--concurrent-deployment-syncs=10",
		"--v=1",
	}
	args = append([]string{c.bin("kube-controller-manager")}, args...)
	args = append(args, c.cfg.ControllerArgs...)
	kcm, err := startProc(c.logDir, "kube-controller-manager", "", args...)
	if err != nil {
		return err
	}
	c.addProc(kcm)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, kcm, "https://"+hostPort("127.0.0.1", port)+"/healthz", nil); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	c.log.Info("kube-controller-manager ready", "elapsed", time.Since(t).Round(time.Millisecond))
	return nil
}

func (c *Cluster) waitAPIServer(ctx context.Context, p *proc) error {
	var last error
	for {
		body, err := c.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			return nil
		}
		last = err
		if p.exited() {
			return fmt.Errorf("exited (%w); log %s:\n%s", p.err, p.logPath, p.tail(3000))
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprint(last)
			if len(msg) > 200 {
				msg = msg[:200] + "…"
			}
			return fmt.Errorf("not ready: %w (last: %s)", ctx.Err(), msg)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (c *Cluster) startDoorman(ctx context.Context) error {
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	c.cpGRPC, c.cpHTTP = ports[0], ports[1]
	t := time.Now()
	security, err := c.controlPlaneSecurityArgs(ctx)
	if err != nil {
		return err
	}
	cp, err := startProc(c.logDir, "controlplane", "", append([]string{filepath.Join(c.cfg.DoormanBinDir, "controlplane"),
		"--kubeconfig=" + c.kubeconfig,
		"--listen=" + hostPort("127.0.0.1", c.cpGRPC),
		"--http-listen=" + hostPort("127.0.0.1", c.cpHTTP),
	}, append(security, c.cfg.ControlPlaneArgs...)...)...)
	if err != nil {
		return err
	}
	c.addProc(cp)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitHTTP(wctx, cp, "http://"+hostPort("127.0.0.1", c.cpHTTP)+"/readyz", nil); err != nil {
		return fmt.Errorf("doorman control plane: %w", err)
	}
	if err := c.writeCA(wctx); err != nil {
		return err
	}
	r, err := startRelay(c.netNS, hostPort(GatewayIP, ControlPlanePort), hostPort("127.0.0.1", c.cpGRPC))
	if err != nil {
		return fmt.Errorf("control plane relay: %w", err)
	}
	c.relays = append(c.relays, r)
	c.log.Info("doorman control plane ready", "grpc", hostPort("127.0.0.1", c.cpGRPC), "elapsed", time.Since(t).Round(time.Millisecond))
	t = time.Now()
	for _, n := range c.nodes {
		if err := c.StartAgent(n.Name); err != nil {
			return err
		}
	}
	for _, n := range c.nodes {
		if err := c.waitNodeHealth(ctx, n, c.agents[n.Name]); err != nil {
			return fmt.Errorf("node agent on %s: %w", n.Name, err)
		}
	}
	c.log.Info("node agents healthy", "nodes", len(c.nodes), "elapsed", time.Since(t).Round(time.Millisecond))
	return nil
}

// StartAgent starts (or restarts) the node agent of a node.
func (c *Cluster) StartAgent(nodeName string) error { return c.StartAgentWith(nodeName) }

// StartAgentWith starts (or restarts) the node agent of a node with extra
// flags after the cluster's own (a later flag wins).
func (c *Cluster) StartAgentWith(nodeName string, extraArgs ...string) error {
	n, ok := c.node(nodeName)
	if !ok {
		return fmt.Errorf("no node %q", nodeName)
	}
	dir := filepath.Join(c.work, n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	args := []string{
		filepath.Join(c.cfg.DoormanBinDir, "nodeagent"),
		"--node-name=" + n.Name,
		"--control-plane=" + hostPort(GatewayIP, ControlPlanePort),
		"--cache=" + filepath.Join(dir, "agent.db"),
		"--inspect-socket=" + c.AgentInspectSocket(n.Name),
		"--health-listen=" + hostPort("0.0.0.0", AgentHealthPort),
	}
	security, err := c.agentSecurityArgs(n, dir)
	if err != nil {
		return err
	}
	args = append(args, security...)
	args = append(args, c.cfg.AgentArgs...)
	args = append(args, extraArgs...)
	p, err := startProc(c.logDir, "nodeagent-"+n.Name, n.NetNS, args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.agents[n.Name] = p
	c.mu.Unlock()
	return nil
}

// AgentInspectSocket is the unix socket of a node's agent Inspect service
// (a file: dial it from any namespace, e.g. grpc.NewClient("unix://"+path)
// or grpcurl -plaintext -unix PATH).
func (c *Cluster) AgentInspectSocket(nodeName string) string {
	return filepath.Join(c.work, nodeName, "inspect.sock")
}

// StopAgent stops the node agent of a node (SIGTERM); its kernel state
// stays.
func (c *Cluster) StopAgent(nodeName string) {
	c.mu.Lock()
	p := c.agents[nodeName]
	delete(c.agents, nodeName)
	c.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

func (c *Cluster) waitNodeHealth(ctx context.Context, n Node, p *proc) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	hc := &netnsHTTP{ns: n.NetNS}
	return waitHTTP(wctx, p, "http://"+hostPort("127.0.0.1", AgentHealthPort)+"/healthz", hc.client())
}

func (c *Cluster) startKubeProxy(ctx context.Context) error {
	for _, n := range c.nodes {
		p, err := startProc(c.logDir, "kube-proxy-"+n.Name, n.NetNS,
			append([]string{c.bin("kube-proxy")}, c.kubeProxyArgs(n, clusterKubeProxy)...)...)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.agents[n.Name] = p
		c.mu.Unlock()
	}
	for _, n := range c.nodes {
		if err := c.waitNodeHealth(ctx, n, c.agents[n.Name]); err != nil {
			return fmt.Errorf("kube-proxy on %s: %w", n.Name, err)
		}
	}
	return nil
}

// Close stops every process and removes every namespace. It is safe to
// call more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	agents := make([]*proc, 0, len(c.agents))
	for _, p := range c.agents {
		agents = append(agents, p)
	}
	procs := c.procs
	c.mu.Unlock()

	t := time.Now()
	if c.cancel != nil {
		c.cancel()
	}
	stopAll(agents, 5*time.Second)
	if c.sim != nil {
		c.sim.stop()
	}
	c.bg.Wait()
	for _, r := range c.relays {
		r.Close()
	}
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop(10 * time.Second)
	}
	var errs []error
	if err := Cleanup(c.cfg.Prefix); err != nil {
		errs = append(errs, err)
	}
	if c.work != "" && c.cfg.WorkDir == "" && !c.cfg.KeepWorkDir {
		if err := os.RemoveAll(c.work); err != nil {
			errs = append(errs, err)
		}
	}
	c.log.Info("cluster down", "prefix", c.cfg.Prefix, "elapsed", time.Since(t).Round(time.Millisecond))
	return errors.Join(errs...)
}

// Kubeconfig is the admin kubeconfig (API server on loopback).
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// NodeKubeconfig is the admin kubeconfig for processes inside node
// namespaces (API server through the gateway relay).
func (c *Cluster) NodeKubeconfig() string { return filepath.Join(c.work, "node.kubeconfig") }

// RESTConfig is the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.rest) }

// Client is an admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Nodes lists the nodes.
func (c *Cluster) Nodes() []Node { return append([]Node(nil), c.nodes...) }

func (c *Cluster) node(name string) (Node, bool) {
	for _, n := range c.nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Prefix names the cluster's namespaces.
func (c *Cluster) Prefix() string { return c.cfg.Prefix }

// ExternalNetNS is the namespace of the client outside the cluster.
func (c *Cluster) ExternalNetNS() string { return c.extNS }

// WorkDir holds certificates, kubeconfigs and logs/.
func (c *Cluster) WorkDir() string { return c.work }

// LogDir holds one log per process.
func (c *Cluster) LogDir() string { return c.logDir }

// ControlPlaneGRPC is doorman's control plane gRPC address on loopback.
func (c *Cluster) ControlPlaneGRPC() string { return hostPort("127.0.0.1", c.cpGRPC) }

// EtcdURL is etcd's client URL on loopback (plain HTTP). Benchmarks load
// large object sets through it; everything else goes through the API
// server.
func (c *Cluster) EtcdURL() string { return c.etcdURL }

// APIServerURL is the API server on loopback.
func (c *Cluster) APIServerURL() string { return "https://" + hostPort("127.0.0.1", c.apiPort) }
