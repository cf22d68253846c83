package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/doorman-proxy/doorman/e2e/echo"
)

// AgnhostImage serves the echo protocol on kind (netexec).
const AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.53"

// Kind is an existing cluster (kind, kubeProxyMode none, doorman deployed
// from deploy/overlays/kind).
type Kind struct {
	kubeconfig string
	rest       *rest.Config
	client     kubernetes.Interface
	nodes      []Node
}

// OpenKind connects to the cluster of kubeconfig.
func OpenKind(ctx context.Context, kubeconfig string) (*Kind, error) {
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
	k := &Kind{kubeconfig: kubeconfig, rest: cfg, client: cs}
	for _, n := range nl.Items {
		node := Node{Name: n.Name, Zone: n.Labels["topology.kubernetes.io/zone"]}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && node.IP == "" {
				node.IP = a.Address
			}
		}
		k.nodes = append(k.nodes, node)
	}
	return k, nil
}

func (k *Kind) Name() string                 { return "kind" }
func (k *Kind) Client() kubernetes.Interface { return k.client }
func (k *Kind) RESTConfig() *rest.Config     { return rest.CopyConfig(k.rest) }
func (k *Kind) Kubeconfig() string           { return k.kubeconfig }
func (k *Kind) Nodes() []Node                { return append([]Node(nil), k.nodes...) }
func (k *Kind) Close() error                 { return nil }

// EchoContainer runs agnhost netexec on the first TCP and first UDP port.
func (k *Kind) EchoContainer(ports ...corev1.ContainerPort) corev1.Container {
	args := []string{"netexec"}
	tcpSet, udpSet := false, false
	for _, p := range ports {
		switch p.Protocol {
		case corev1.ProtocolUDP:
			if !udpSet {
				args = append(args, "--udp-port="+strconv.Itoa(int(p.ContainerPort)))
				udpSet = true
			}
		default:
			if !tcpSet {
				args = append(args, "--http-port="+strconv.Itoa(int(p.ContainerPort)))
				tcpSet = true
			}
		}
	}
	if !udpSet {
		args = append(args, "--udp-port=-1")
	}
	return corev1.Container{Name: "echo", Image: AgnhostImage, Args: args, Ports: ports}
}

// AskFromPod asks the Pod's netexec, through the API server's Pod proxy, to
// dial addr and return what it heard (netexec's /dial).
func (k *Kind) AskFromPod(ctx context.Context, pod *corev1.Pod, proto, addr, request string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	httpPort := ""
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Protocol == corev1.ProtocolTCP || p.Protocol == "" {
				httpPort = strconv.Itoa(int(p.ContainerPort))
				break
			}
		}
	}
	if httpPort == "" {
		return "", fmt.Errorf("pod %s/%s has no TCP port for netexec", pod.Namespace, pod.Name)
	}
	protocol := "http"
	if proto == "udp" {
		protocol = "udp"
	}
	raw, err := k.client.CoreV1().Pods(pod.Namespace).ProxyGet("http", pod.Name, httpPort, "/dial", map[string]string{
		"request": request, "protocol": protocol, "host": host, "port": port, "tries": "1",
	}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("from pod %s/%s: dial %s: %w", pod.Namespace, pod.Name, addr, err)
	}
	var out struct {
		Responses []string `json:"responses"`
		Errors    []string `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("from pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if len(out.Responses) == 0 {
		return "", fmt.Errorf("from pod %s/%s: dial %s: %v", pod.Namespace, pod.Name, addr, out.Errors)
	}
	return out.Responses[0], nil
}

// AskFromExternal dials from the test process (the host, on kind's node
// network).
func (k *Kind) AskFromExternal(ctx context.Context, proto, addr, request string) (string, error) {
	return echo.Ask(ctx, nil, proto, addr, request)
}

func (k *Kind) SetPodReady(context.Context, string, string, bool) error {
	return fmt.Errorf("set pod readiness on kind: %w", ErrUnsupported)
}
