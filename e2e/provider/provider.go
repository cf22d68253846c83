package provider

import (
	"context"
	"errors"
	"fmt"
	"os"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/e2e/echo"
)

// ErrUnsupported is returned by operations a provider cannot perform.
var ErrUnsupported = errors.New("not supported by this provider")

// Node is a node as the suite sees it.
type Node struct {
	Name    string
	IP      string // an address NodePorts answer on, reachable from the external client
	IP6     string // its IPv6 twin ("" on a single-stack cluster)
	PodCIDR string // the node's IPv4 Pod range
	Zone    string
}

// Asker sends echo requests (package echo) from one place in the cluster:
// a Pod, a node's own network or the external client.
type Asker interface {
	// Where names the place, for messages.
	Where() string
	// Ask sends request ("hostname" or "clientip") over proto ("tcp" =
	// HTTP, "udp") to addr on a fresh connection. A refusal matches
	// syscall.ECONNREFUSED (errors.Is); echo.Took tells how long a failure
	// took where it was sent from when that differs from what the caller
	// measures.
	Ask(ctx context.Context, proto, addr, request string) (string, error)
	// OpenFlow opens a long-lived flow from there.
	OpenFlow(ctx context.Context, proto, addr string) (echo.Flow, error)
}

// Provider is a cluster the suite runs against.
type Provider interface {
	Name() string
	Client() kubernetes.Interface
	RESTConfig() *rest.Config
	Kubeconfig() string
	Nodes() []Node
	// EchoContainer is the container of a Pod answering the echo protocol
	// on the given ports (TCP ports serve HTTP, UDP ports datagrams).
	EchoContainer(ports ...corev1.ContainerPort) corev1.Container
	// FromPod is a client inside the Pod (one made with EchoContainer).
	FromPod(pod *corev1.Pod) (Asker, error)
	// FromNode is a client in the node's own network namespace.
	FromNode(node string) (Asker, error)
	// FromExternal is a client outside the cluster on the node network.
	FromExternal() Asker
	// DialFromExternal opens sockets at that client, for protocols other
	// than echo's (a health check's HTTP status).
	DialFromExternal() echo.Dialer
	// ExternalClientIP is the external client's IPv4 address.
	ExternalClientIP() string
	// RouteFromExternal makes the external client send traffic for cidr
	// (an externalIP or load-balancer IP) to a node, as an upstream router
	// or load balancer would.
	RouteFromExternal(cidr, node string) error
	// SetPodReady flips a Pod's readiness, as a readiness probe would.
	SetPodReady(ctx context.Context, ns, name string, ready bool) error
	// AgentInspect connects to the node agent's Inspect service on node;
	// unary calls only. Call closer when done.
	AgentInspect(node string) (conn grpc.ClientConnInterface, closer func(), err error)
	// PutRaw writes value under key straight into the cluster's etcd,
	// past the API server's validation, as an older API server may have
	// stored it (package etcdput encodes objects and names keys). An
	// error wrapping ErrUnsupported says the provider cannot reach etcd.
	PutRaw(ctx context.Context, key string, value []byte) error
	Close() error
}

// Selected names the provider from the environment: DOORMAN_E2E_PROVIDER
// ("netns" or "kind"), default netns.
func Selected(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv("DOORMAN_E2E_PROVIDER"); v != "" {
		return v
	}
	return "netns"
}

// Open starts or connects to the named provider.
func Open(ctx context.Context, name string, opts NetNSOptions) (Provider, error) {
	switch name {
	case "netns":
		return StartNetNS(ctx, opts)
	case "kind":
		kc := os.Getenv("KUBECONFIG")
		if kc == "" {
			return nil, errors.New("provider kind: KUBECONFIG is not set (make e2e-kind sets it to the kind cluster's kubeconfig)")
		}
		return OpenKind(ctx, kc, KindOptions{Logger: opts.Logger})
	default:
		return nil, fmt.Errorf("unknown provider %q (want netns or kind)", name)
	}
}

// DialAsker is an Asker whose sockets dial opens (in a network namespace
// of this machine, say); where names the place.
func DialAsker(where string, dial echo.Dialer) Asker { return dialAsker{where: where, dial: dial} }

// dialAsker asks through sockets opened on this machine, in whatever
// network namespace dial puts them.
type dialAsker struct {
	where string
	dial  echo.Dialer
}

func (a dialAsker) Where() string { return a.where }

func (a dialAsker) Ask(ctx context.Context, proto, addr, request string) (string, error) {
	ans, err := echo.Ask(ctx, a.dial, proto, addr, request)
	if err != nil {
		return "", fmt.Errorf("from %s: %w", a.where, err)
	}
	return ans, nil
}

func (a dialAsker) OpenFlow(ctx context.Context, proto, addr string) (echo.Flow, error) {
	f, err := echo.OpenFlow(ctx, a.dial, proto, addr)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", a.where, err)
	}
	return f, nil
}

var (
	_ Provider = (*NetNS)(nil)
	_ Provider = (*Kind)(nil)
)
