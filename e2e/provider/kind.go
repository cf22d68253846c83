package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/retry"
	"github.com/doorman-proxy/doorman/internal/netnsdir"
)

const (
	// EchoImage is doorman's echo image (e2e/echo/cmd/echo), loaded into
	// the kind nodes by make e2e-kind; never pulled.
	EchoImage = "doorman.local/echo:e2e"
	// ControlPort is where every echo container serves echo.Control. It is
	// outside the ports the suite's Services use and clear of the ports a
	// node's host network holds (kubelet 10250, doorman's 9400, 9410,
	// 10249, 10256, NodePorts 30000-32767), since node dialers listen there.
	ControlPort = 19090
	// KindAgentInspectAddr is where the kind overlay
	// (deploy/overlays/kind/e2e-access.yaml) makes the node agent serve
	// Inspect besides its root-only unix socket: the node's loopback,
	// reached from a dialer on that node.
	KindAgentInspectAddr = "127.0.0.1:9410"

	dialerNamespace = "doorman-e2e-dialers"
	dialerName      = "dialer"
	// externalNetNS is the external client: a network namespace on this
	// machine whose veth is a port of kind's Docker bridge.
	externalNetNS = "doorman-e2e-ext"
	externalLink  = "doorman-e2e-ext" // the host end (at most 15 bytes)
)

// ErrNotAsked wraps failures to reach the place a request is sent from
// (the API server's Pod proxy, the control endpoint), as opposed to the
// request itself failing there: a test waiting for traffic to fail must
// not count them.
var ErrNotAsked = errors.New("request not sent")

// KindOptions configure the kind provider.
type KindOptions struct {
	Logger hclog.Logger
}

// Kind is an existing cluster (kind, kubeProxyMode none, doorman deployed
// from deploy/). Pods run doorman's echo image; requests are sent from a
// Pod by its control endpoint, reached through the API server's Pod proxy;
// from a node by a dialer Pod on that node's host network (a DaemonSet the
// provider runs while open); from outside by this process in a network
// namespace attached to kind's Docker bridge.
type Kind struct {
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	nodes      []Node
	log        hclog.Logger

	dialers map[string]string // node name → dialer Pod name
	extIP   string
	extDial echo.Dialer
}

// OpenKind connects to the cluster of kubeconfig and starts the node
// dialers and the external client. It needs root (the external client is
// a network namespace).
func OpenKind(ctx context.Context, kubeconfig string, o KindOptions) (_ *Kind, err error) {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("provider kind: needs root (the external client is a network namespace on kind's Docker bridge)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	k := &Kind{kubeconfig: kubeconfig, rest: cfg, client: cs, log: o.Logger.Named("kind")}
	for _, n := range nl.Items {
		node := Node{Name: n.Name, Zone: n.Labels["topology.kubernetes.io/zone"]}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if strings.Contains(a.Address, ":") {
				if node.IP6 == "" {
					node.IP6 = a.Address
				}
			} else if node.IP == "" {
				node.IP = a.Address
			}
		}
		for _, c := range n.Spec.PodCIDRs {
			if !strings.Contains(c, ":") {
				node.PodCIDR = c
				break
			}
		}
		if node.IP == "" {
			return nil, fmt.Errorf("node %s has no IPv4 InternalIP", n.Name)
		}
		k.nodes = append(k.nodes, node)
	}
	if len(k.nodes) == 0 {
		return nil, errors.New("the cluster has no nodes")
	}
	defer func() {
		if err != nil {
			_ = k.Close()
		}
	}()
	if err := k.startExternal(ctx); err != nil {
		return nil, fmt.Errorf("external client: %w", err)
	}
	if err := k.startDialers(ctx); err != nil {
		return nil, fmt.Errorf("node dialers: %w", err)
	}
	return k, nil
}

func (k *Kind) Name() string                 { return "kind" }
func (k *Kind) Client() kubernetes.Interface { return k.client }
func (k *Kind) RESTConfig() *rest.Config     { return rest.CopyConfig(k.rest) }
func (k *Kind) Kubeconfig() string           { return k.kubeconfig }
func (k *Kind) Nodes() []Node                { return append([]Node(nil), k.nodes...) }

// Close removes the node dialers and the external client's namespace.
func (k *Kind) Close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.client.CoreV1().Namespaces().Delete(ctx, dialerNamespace, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete namespace %s: %w", dialerNamespace, err))
	}
	if err := run("ip", "netns", "del", externalNetNS); err != nil && netnsExists(externalNetNS) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// EchoContainer runs doorman's echo image on the given TCP and UDP ports
// (SCTP ports are declared only), with the control endpoint and a
// readiness probe on it that SetPodReady flips.
func (k *Kind) EchoContainer(ports ...corev1.ContainerPort) corev1.Container {
	var tcp, udp []string
	for _, p := range ports {
		switch p.Protocol {
		case corev1.ProtocolUDP:
			udp = append(udp, strconv.Itoa(int(p.ContainerPort)))
		case corev1.ProtocolTCP, "":
			tcp = append(tcp, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	return echoContainer(ports, "-tcp="+strings.Join(tcp, ","), "-udp="+strings.Join(udp, ","))
}

func echoContainer(ports []corev1.ContainerPort, args ...string) corev1.Container {
	return corev1.Container{
		Name:            "echo",
		Image:           EchoImage,
		ImagePullPolicy: corev1.PullNever,
		Args:            append(args, "-control=:"+strconv.Itoa(ControlPort)),
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
		}}},
		Ports: ports,
		// Probed every second and flipped by one failure, so SetPodReady
		// shows in the Pod's status within about a second.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/readyz", Port: intstr.FromInt32(ControlPort),
			}},
			PeriodSeconds:    1,
			TimeoutSeconds:   1,
			SuccessThreshold: 1,
			FailureThreshold: 1,
		},
	}
}

// FromPod asks through the Pod's control endpoint.
func (k *Kind) FromPod(pod *corev1.Pod) (Asker, error) {
	return &proxyAsker{k: k, ns: pod.Namespace, pod: pod.Name, where: "pod " + pod.Name + " on " + pod.Spec.NodeName}, nil
}

// FromNode asks through the node's dialer, on the node's host network.
func (k *Kind) FromNode(node string) (Asker, error) {
	pod, ok := k.dialers[node]
	if !ok {
		return nil, fmt.Errorf("no dialer on node %q", node)
	}
	return &proxyAsker{k: k, ns: dialerNamespace, pod: pod, where: "node " + node}, nil
}

// FromExternal asks from the external client's namespace.
func (k *Kind) FromExternal() Asker {
	return dialAsker{where: "the external client", dial: k.extDial}
}

func (k *Kind) DialFromExternal() echo.Dialer { return k.extDial }
func (k *Kind) ExternalClientIP() string      { return k.extIP }

// RouteFromExternal routes cidr from the external client to the node's
// address on kind's bridge.
func (k *Kind) RouteFromExternal(cidr, node string) error {
	var ip string
	for _, n := range k.nodes {
		if n.Name == node {
			ip = n.IP
		}
	}
	if ip == "" {
		return fmt.Errorf("no node %q", node)
	}
	if _, err := netip.ParsePrefix(cidr); err != nil {
		return fmt.Errorf("route from external: %w", err)
	}
	return run("ip", "-n", externalNetNS, "route", "replace", cidr, "via", ip, "dev", "eth0")
}

// SetPodReady flips what the Pod's readiness probe sees and waits until
// the kubelet has reported it, so the Pod's status says so on return, as
// on the netns cluster.
func (k *Kind) SetPodReady(ctx context.Context, ns, name string, ready bool) error {
	if _, err := k.proxyGet(ctx, ns, name, "ready", map[string]string{"set": strconv.FormatBool(ready)}); err != nil {
		return fmt.Errorf("set pod %s/%s ready=%t: %w", ns, name, ready, err)
	}
	want := corev1.ConditionFalse
	if ready {
		want = corev1.ConditionTrue
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		pod, err := k.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range pod.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == want {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s: Ready did not become %s: %w", ns, name, want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// AgentInspect forwards unary calls through the dialer on node to the
// agent's Inspect address on that node's loopback.
func (k *Kind) AgentInspect(node string) (grpc.ClientConnInterface, func(), error) {
	pod, ok := k.dialers[node]
	if !ok {
		return nil, nil, fmt.Errorf("no dialer on node %q", node)
	}
	return &unaryForwarder{k: k, pod: pod, addr: KindAgentInspectAddr}, func() {}, nil
}

// proxyGet GETs path of a Pod's control endpoint through the API server.
func (k *Kind) proxyGet(ctx context.Context, ns, pod, path string, params map[string]string) ([]byte, error) {
	raw, err := k.client.CoreV1().Pods(ns).ProxyGet("http", pod, strconv.Itoa(ControlPort), path, params).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: pod %s/%s %s: %w", ErrNotAsked, ns, pod, path, err)
	}
	return raw, nil
}

// proxyAsker sends requests from a Pod's control endpoint.
type proxyAsker struct {
	k       *Kind
	ns, pod string
	where   string
}

func (a *proxyAsker) Where() string { return a.where }

// remote splits ctx's time: the request gets what is left of it where it
// is sent from, the round trip through the API server some more.
func remote(ctx context.Context) (context.Context, context.CancelFunc, string) {
	left := 3 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		left = time.Until(dl)
	}
	if left < 100*time.Millisecond {
		left = 100 * time.Millisecond
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), left+10*time.Second)
	return rctx, cancel, left.String()
}

func (a *proxyAsker) result(ctx context.Context, path string, params map[string]string) (string, error) {
	rctx, cancel, left := remote(ctx)
	defer cancel()
	params["timeout"] = left
	raw, err := a.k.proxyGet(rctx, a.ns, a.pod, path, params)
	if err != nil {
		return "", fmt.Errorf("from %s: %w", a.where, err)
	}
	var res echo.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", fmt.Errorf("from %s: %w: answer %q: %w", a.where, ErrNotAsked, raw, err)
	}
	if err := res.Err(); err != nil {
		return "", fmt.Errorf("from %s: %w", a.where, err)
	}
	return res.Answer, nil
}

func (a *proxyAsker) Ask(ctx context.Context, proto, addr, request string) (string, error) {
	return a.result(ctx, "ask", map[string]string{"proto": proto, "addr": addr, "request": request})
}

func (a *proxyAsker) OpenFlow(ctx context.Context, proto, addr string) (echo.Flow, error) {
	rctx, cancel, left := remote(ctx)
	defer cancel()
	raw, err := a.k.proxyGet(rctx, a.ns, a.pod, "flow/open", map[string]string{"proto": proto, "addr": addr, "timeout": left})
	if err != nil {
		return nil, fmt.Errorf("from %s: flow to %s: %w", a.where, addr, err)
	}
	return &proxyFlow{a: a, id: strings.TrimSpace(string(raw))}, nil
}

// proxyFlow is a flow held open by a Pod's control endpoint.
type proxyFlow struct {
	a  *proxyAsker
	id string
}

func (f *proxyFlow) Ask(ctx context.Context, request string) (string, error) {
	return f.a.result(ctx, "flow/ask", map[string]string{"id": f.id, "request": request})
}

func (f *proxyFlow) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := f.a.k.proxyGet(ctx, f.a.ns, f.a.pod, "flow/close", map[string]string{"id": f.id})
	return err
}

// unaryForwarder is a grpc.ClientConnInterface whose unary calls a
// dialer's control endpoint makes (POST /unary).
type unaryForwarder struct {
	k    *Kind
	pod  string
	addr string
}

func (u *unaryForwarder) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	in, ok := args.(proto.Message)
	if !ok {
		return fmt.Errorf("unary %s: request %T is not a protobuf message", method, args)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return fmt.Errorf("unary %s: reply %T is not a protobuf message", method, reply)
	}
	body, err := proto.Marshal(in)
	if err != nil {
		return fmt.Errorf("unary %s: %w", method, err)
	}
	rctx, cancel, left := remote(ctx)
	defer cancel()
	raw, err := u.k.client.CoreV1().RESTClient().Post().
		Namespace(dialerNamespace).Resource("pods").SubResource("proxy").
		Name(utilnet.JoinSchemeNamePort("http", u.pod, strconv.Itoa(ControlPort))).
		Suffix("unary").
		Param("addr", u.addr).Param("method", method).Param("timeout", left).
		Body(body).DoRaw(rctx)
	if err != nil {
		return fmt.Errorf("unary %s to %s through %s/%s: %w", method, u.addr, dialerNamespace, u.pod, err)
	}
	if err := proto.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("unary %s: reply: %w", method, err)
	}
	return nil
}

func (u *unaryForwarder) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, fmt.Errorf("streams through the node dialer: %w", ErrUnsupported)
}

// startDialers runs the echo image on every node's host network (a
// DaemonSet tolerating every taint) and waits until each node has a Ready
// one.
func (k *Kind) startDialers(ctx context.Context) error {
	cs := k.client
	nsObj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dialerNamespace}}
	// A namespace left by a killed run may still be terminating.
	if err := retry.Until(ctx, 2*time.Minute, func() error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, nsObj, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			if delErr := cs.CoreV1().Namespaces().Delete(ctx, dialerNamespace, metav1.DeleteOptions{}); delErr != nil && !apierrors.IsNotFound(delErr) {
				return delErr
			}
			return fmt.Errorf("namespace %s from an earlier run still there", dialerNamespace)
		}
		return err
	}); err != nil {
		return err
	}
	labels := map[string]string{"app.kubernetes.io/name": "doorman-e2e-dialer"}
	ctr := echoContainer(nil)
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: dialerName, Namespace: dialerNamespace},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers:                    []corev1.Container{ctr},
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					EnableServiceLinks:            ptr.To(false),
				},
			},
		},
	}
	// The default ServiceAccount appears shortly after the namespace; the
	// DaemonSet controller retries Pods until it does.
	if err := createInNewNamespace(ctx, func() error {
		_, err := cs.AppsV1().DaemonSets(dialerNamespace).Create(ctx, ds, metav1.CreateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("create daemonset %s/%s: %w", dialerNamespace, dialerName, err)
	}
	return retry.Until(ctx, 3*time.Minute, func() error {
		pl, err := cs.CoreV1().Pods(dialerNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=doorman-e2e-dialer"})
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, p := range pl.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					got[p.Spec.NodeName] = p.Name
				}
			}
		}
		for _, n := range k.nodes {
			if got[n.Name] == "" {
				return fmt.Errorf("no ready dialer pod in %s on node %s (%d of %d nodes have one)", dialerNamespace, n.Name, len(got), len(k.nodes))
			}
		}
		k.dialers = got
		return nil
	})
}

// createInNewNamespace calls create, the first object of a namespace just
// created, until the API server stops refusing it with the
// NamespaceTerminating cause: a namespace of the same name deleted
// moments before (by an earlier run, or the previous phase of this one)
// can still look terminating to the API server's admission cache after
// the new one was created. Any other error is returned at once.
func createInNewNamespace(ctx context.Context, create func() error) error {
	var last error
	if err := retry.Until(ctx, time.Minute, func() error {
		last = create()
		if apierrors.HasStatusCause(last, corev1.NamespaceTerminatingCause) {
			return last
		}
		return nil
	}); err != nil {
		return err
	}
	return last
}

// startExternal makes the external client: a network namespace whose veth
// is a port of the Docker bridge the kind nodes are on, with an address of
// that network. Nodes answer it on the link, as they would a machine next
// to them; load-balancer and external IPs are routed to nodes with
// RouteFromExternal. Nothing is added to this machine's own namespace but
// the veth's host end on the bridge.
func (k *Kind) startExternal(ctx context.Context) error {
	dev, prefix, err := bridgeOf(k.nodes[0].IP)
	if err != nil {
		return err
	}
	ip, err := externalAddress(prefix, k.nodes)
	if err != nil {
		return err
	}
	if err := netnsdir.Prepare(); err != nil {
		return err
	}
	// Left by a killed run: the namespace and with it the veth.
	if netnsExists(externalNetNS) {
		if err := run("ip", "netns", "del", externalNetNS); err != nil {
			return err
		}
	}
	for _, args := range [][]string{
		{"netns", "add", externalNetNS},
		{"link", "add", externalLink, "type", "veth", "peer", "name", "eth0", "netns", externalNetNS},
		{"link", "set", externalLink, "master", dev, "up"},
		{"-n", externalNetNS, "link", "set", "lo", "up"},
		{"-n", externalNetNS, "addr", "add", netip.PrefixFrom(ip, prefix.Bits()).String(), "dev", "eth0"},
		{"-n", externalNetNS, "link", "set", "eth0", "up"},
	} {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	// Like a router, the client ignores ICMP redirects: a node forwarding
	// a VIP it has not programmed yet would otherwise send it elsewhere.
	if err := cluster.InNetNS(externalNetNS, func() error {
		for _, dev := range []string{"all", "default", "eth0"} {
			p := filepath.Join("/proc/sys/net/ipv4/conf", dev, "accept_redirects")
			if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sysctls in %s: %w", externalNetNS, err)
	}
	k.extIP = ip.String()
	k.extDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := cluster.InNetNS(externalNetNS, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	// Every node's kubelet answers on the link: the client is attached.
	for _, n := range k.nodes {
		target := net.JoinHostPort(n.IP, "10250")
		if err := retry.Until(ctx, 10*time.Second, func() error {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			c, err := k.extDial(dctx, "tcp", target)
			if err == nil {
				_ = c.Close()
			}
			return err
		}); err != nil {
			return fmt.Errorf("from %s (%s) to node %s's kubelet %s: %w", externalNetNS, ip, n.Name, target, err)
		}
	}
	k.log.Info("external client", "netns", externalNetNS, "address", ip, "bridge", dev)
	return nil
}

// bridgeOf finds the local device that reaches nodeIP (kind's Docker
// bridge) and the network on it.
func bridgeOf(nodeIP string) (string, netip.Prefix, error) {
	out, err := exec.Command("ip", "-o", "-4", "route", "get", nodeIP).Output()
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("ip route get %s: %w", nodeIP, err)
	}
	f := strings.Fields(string(out))
	dev := ""
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "dev" {
			dev = f[i+1]
		}
		if f[i] == "via" {
			return "", netip.Prefix{}, fmt.Errorf("node %s is behind a gateway (%s), not on a local bridge", nodeIP, strings.TrimSpace(string(out)))
		}
	}
	if dev == "" {
		return "", netip.Prefix{}, fmt.Errorf("ip route get %s: no device in %q", nodeIP, out)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", dev, "bridge")); err != nil {
		return "", netip.Prefix{}, fmt.Errorf("node %s is reached through %s, which is not a bridge", nodeIP, dev)
	}
	out, err = exec.Command("ip", "-o", "-4", "addr", "show", "dev", dev).Output()
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("ip addr show dev %s: %w", dev, err)
	}
	node, err := netip.ParseAddr(nodeIP)
	if err != nil {
		return "", netip.Prefix{}, err
	}
	f = strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] != "inet" {
			continue
		}
		p, err := netip.ParsePrefix(f[i+1])
		if err == nil && p.Masked().Contains(node) {
			return dev, p.Masked(), nil
		}
	}
	return "", netip.Prefix{}, fmt.Errorf("no address of %s covers node %s", dev, nodeIP)
}

// externalAddress picks the third-to-last address of the bridge's network
// for the external client: Docker hands addresses out from the bottom.
func externalAddress(p netip.Prefix, nodes []Node) (netip.Addr, error) {
	if !p.Addr().Is4() || p.Bits() > 28 {
		return netip.Addr{}, fmt.Errorf("network %s is too small for an external client", p)
	}
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<(32-p.Bits()) - 1 // broadcast
	v -= 2
	ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	for _, n := range nodes {
		if n.IP == ip.String() {
			return netip.Addr{}, fmt.Errorf("node %s already holds %s", n.Name, ip)
		}
	}
	return ip, nil
}

func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

func run(name string, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
