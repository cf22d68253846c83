package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/echo"
)

// NetNSOptions configure the netns provider.
type NetNSOptions struct {
	Nodes         int
	K8sBinDir     string // default: DefaultK8sBinDir()
	DoormanBinDir string // controlplane and nodeagent binaries
	Proxy         cluster.Proxy
	KeepWorkDir   bool
	Logger        hclog.Logger
}

// DefaultK8sBinDir is where e2e/hack/build-k8s.sh puts its binaries.
func DefaultK8sBinDir() string {
	cache := os.Getenv("DOORMAN_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "doorman")
	}
	return filepath.Join(cache, "k8s-v1.36.3", "bin")
}

// NetNS is the local cluster in network namespaces.
type NetNS struct {
	*cluster.Cluster
}

// StartNetNS brings a local cluster up.
func StartNetNS(ctx context.Context, o NetNSOptions) (*NetNS, error) {
	if o.K8sBinDir == "" {
		o.K8sBinDir = DefaultK8sBinDir()
	}
	c, err := cluster.Start(ctx, cluster.Config{
		Nodes:         o.Nodes,
		K8sBinDir:     o.K8sBinDir,
		DoormanBinDir: o.DoormanBinDir,
		Proxy:         o.Proxy,
		KeepWorkDir:   o.KeepWorkDir,
		Logger:        o.Logger,
	})
	if err != nil {
		return nil, err
	}
	return &NetNS{Cluster: c}, nil
}

func (p *NetNS) Name() string                 { return "netns" }
func (p *NetNS) Client() kubernetes.Interface { return p.Cluster.Client() }
func (p *NetNS) RESTConfig() *rest.Config     { return p.Cluster.RESTConfig() }

func (p *NetNS) Nodes() []Node {
	var out []Node
	for _, n := range p.Cluster.Nodes() {
		out = append(out, Node{Name: n.Name, IP: n.IP, Zone: n.Zone})
	}
	return out
}

// EchoContainer: the simulator ignores the image and serves the echo
// protocol on the declared ports.
func (p *NetNS) EchoContainer(ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: "echo", Image: "doorman.local/echo", Ports: ports}
}

func (p *NetNS) AskFromPod(ctx context.Context, pod *corev1.Pod, proto, addr, request string) (string, error) {
	dial, err := p.DialFromPod(pod.Namespace, pod.Name)
	if err != nil {
		return "", err
	}
	ans, err := echo.Ask(ctx, dial, proto, addr, request)
	if err != nil {
		return "", fmt.Errorf("from pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return ans, nil
}

func (p *NetNS) AskFromExternal(ctx context.Context, proto, addr, request string) (string, error) {
	ans, err := echo.Ask(ctx, p.DialFromExternal(), proto, addr, request)
	if err != nil {
		return "", fmt.Errorf("from external: %w", err)
	}
	return ans, nil
}
