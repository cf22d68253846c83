package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// NetNSOptions configure the netns provider.
type NetNSOptions struct {
	Nodes         int
	K8sBinDir     string // default: DefaultK8sBinDir()
	DoormanBinDir string // controlplane and nodeagent binaries
	Proxy         cluster.Proxy
	KeepWorkDir   bool
	Logger        hclog.Logger
	// ControlPlaneArgs are extra doorman control plane flags.
	ControlPlaneArgs []string
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

		ControlPlaneArgs: o.ControlPlaneArgs,
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
		out = append(out, Node{Name: n.Name, IP: n.IP, IP6: n.IP6, PodCIDR: n.PodCIDR, Zone: n.Zone})
	}
	return out
}

// EchoContainer: the simulator ignores the image and serves the echo
// protocol on the declared ports.
func (p *NetNS) EchoContainer(ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: "echo", Image: "doorman.local/echo", Ports: ports}
}

// FromPod dials from inside the Pod's network namespace.
func (p *NetNS) FromPod(pod *corev1.Pod) (Asker, error) {
	dial, err := p.DialFromPod(pod.Namespace, pod.Name)
	if err != nil {
		return nil, err
	}
	return dialAsker{where: "pod " + pod.Name + " on " + pod.Spec.NodeName, dial: dial}, nil
}

// FromNode dials from the node's network namespace.
func (p *NetNS) FromNode(node string) (Asker, error) {
	dial, err := p.DialFromNode(node)
	if err != nil {
		return nil, err
	}
	return dialAsker{where: "node " + node, dial: dial}, nil
}

// FromExternal dials from the external client's namespace.
func (p *NetNS) FromExternal() Asker {
	return dialAsker{where: "the external client", dial: p.DialFromExternal()}
}

// ExternalClientIP is the external client namespace's address.
func (p *NetNS) ExternalClientIP() string { return cluster.ExternalIP }

// AgentInspect dials the agent's Inspect socket on node.
func (p *NetNS) AgentInspect(node string) (grpc.ClientConnInterface, func(), error) {
	conn, err := grpc.NewClient("unix://"+p.AgentInspectSocket(node),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("inspect %s: %w", node, err)
	}
	return conn, func() { _ = conn.Close() }, nil
}
