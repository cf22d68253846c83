package provider

import (
	"context"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ErrUnsupported is returned by operations a provider cannot perform; tests
// skip on it.
var ErrUnsupported = errors.New("not supported by this provider")

// Node is a node as the suite sees it.
type Node struct {
	Name string
	IP   string // an address NodePorts answer on, reachable by AskFromExternal
	Zone string
}

// Provider is a cluster the suite runs against.
type Provider interface {
	Name() string
	Client() kubernetes.Interface
	RESTConfig() *rest.Config
	Kubeconfig() string
	Nodes() []Node
	// EchoContainer is the container of a Pod answering the echo protocol
	// (package echo) on the given ports.
	EchoContainer(ports ...corev1.ContainerPort) corev1.Container
	// AskFromPod sends request ("hostname" or "clientip") over proto
	// ("tcp" = HTTP, "udp") to addr from inside the Pod (an echo Pod).
	AskFromPod(ctx context.Context, pod *corev1.Pod, proto, addr, request string) (string, error)
	// AskFromExternal does the same from a client outside the cluster on
	// the node network.
	AskFromExternal(ctx context.Context, proto, addr, request string) (string, error)
	// SetPodReady flips a Pod's readiness, as a readiness probe would.
	SetPodReady(ctx context.Context, ns, name string, ready bool) error
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
			return nil, errors.New("provider kind: KUBECONFIG is not set")
		}
		return OpenKind(ctx, kc)
	default:
		return nil, fmt.Errorf("unknown provider %q (want netns or kind)", name)
	}
}

var (
	_ Provider = (*NetNS)(nil)
	_ Provider = (*Kind)(nil)
)
