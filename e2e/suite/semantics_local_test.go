//go:build e2e

package suite

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// localDetection is one local traffic configuration of a node's proxy
// (kube-proxy's flags, which doorman's agent shares) and what it makes of
// the sources the test uses.
type localDetection struct {
	name  string
	flags []string
	// The external client, routed through the node, counts as a local Pod.
	external bool
	// A Pod of the node counts as a local Pod.
	pod bool
	// Every ClusterIP connection is masqueraded (--masquerade-all).
	all bool
}

// The netns cluster's Pods sit on point-to-point veths named vp<N>, with
// no bridge: BridgeInterface names the node's uplink eth0, so that an
// interface match is seen at work (what arrives from outside counts as
// local, what arrives from a Pod does not). ClusterCIDR is tried with the
// real Pod range and with one that holds only the external client.
var localDetections = []localDetection{
	{name: "NodeCIDR", flags: []string{"--detect-local-mode=NodeCIDR"}, pod: true},
	{name: "ClusterCIDR", flags: []string{"--detect-local-mode=ClusterCIDR", "--cluster-cidr=" + cluster.PodCIDR + "," + cluster.PodCIDR6}, pod: true},
	{name: "ClusterCIDR_ExternalClient", flags: []string{"--detect-local-mode=ClusterCIDR", "--cluster-cidr=" + cluster.ExternalIP + "/32"}, external: true},
	{name: "BridgeInterface", flags: []string{"--detect-local-mode=BridgeInterface", "--pod-bridge-interface=eth0"}, external: true},
	{name: "InterfaceNamePrefix", flags: []string{"--detect-local-mode=InterfaceNamePrefix", "--pod-interface-name-prefix=vp"}, pod: true},
	{name: "MasqueradeAll", flags: []string{"--detect-local-mode=NodeCIDR", "--masquerade-all"}, pod: true, all: true},
}

// SEMANTICS.md, "Addresses on the way": local traffic detection and
// ClusterIP masquerade. Node 0's proxy is restarted with each mode; the
// backends report the source they saw:
//
//   - ClusterIP traffic not from a local Pod (routed from outside, the
//     node itself) is masqueraded to node 0's address toward the backend;
//     from a local Pod it keeps its source; --masquerade-all masquerades
//     it all;
//   - externalTrafficPolicy Local: a source counted as a local Pod gets
//     every endpoint, any other only node 0's, with its source kept.
//
// The ClusterIP's backend is on node 0: a source kept from outside is
// answered back through node 0 only when the backend is there.
func TestSemantics_LocalTrafficDetection(t *testing.T) {
	track(t)
	nn := netnsCluster(t, "restarts a node's proxy with flags; on kind the proxy is the DaemonSet deploy/ installed, with its own flags")
	if *flagProxy == "none" {
		skipAs(t, "not applicable with -e2e.proxy=none", "no proxy to restart with flags")
	}
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	http := containerPort("http", corev1.ProtocolTCP, 8080)
	backend := echoPod(t, ns, "backend", nodes[0], map[string]string{"app": "backend"}, 2, http)
	client := echoPod(t, ns, "client", nodes[0], nil, 2, http)
	etpLabels := map[string]string{"app": "local"}
	a := echoPod(t, ns, "a", nodes[0], etpLabels, 2, http)
	b := echoPod(t, ns, "b", nodes[1], etpLabels, 2, http)
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	eip := externalAddr()
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "local"},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              etpLabels,
			ExternalIPs:           []string{eip},
			Ports:                 []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	readyEndpoints(t, ns, "backend", 1)
	readyEndpoints(t, ns, "local", 2)
	for _, cidr := range []string{svc.Spec.ClusterIP + "/32", eip + "/32"} {
		if err := prov.RouteFromExternal(cidr, nodes[0]); err != nil {
			t.Fatal(err)
		}
	}
	n0 := nodeOf(t, nodes[0])
	masqueraded := podGateway(t, n0) // node 0's end of the backend's veth
	clusterIP, etp := addr(svc.Spec.ClusterIP, 80), addr(eip, 80)
	ext, pod, node := fromExternal(t), fromPod(t, &client), fromNode(t, nodes[0])

	for _, d := range localDetections {
		t.Run(d.name, func(t *testing.T) {
			restartProxyWith(t, nn, nodes[0], d.flags...)
			t.Run("ClusterIP from outside", func(t *testing.T) {
				want := masqueraded
				if d.external && !d.all {
					want = prov.ExternalClientIP()
				}
				waitSource(t, ext, clusterIP, backend.Name, want)
			})
			t.Run("ClusterIP from a Pod", func(t *testing.T) {
				want := masqueraded
				if d.pod && !d.all {
					want = client.Status.PodIP
				}
				waitSource(t, pod, clusterIP, backend.Name, want)
			})
			t.Run("ClusterIP from the node", func(t *testing.T) {
				waitSource(t, node, clusterIP, backend.Name, masqueraded)
			})
			t.Run("externalTrafficPolicy Local from a Pod", func(t *testing.T) {
				if d.pod {
					waitAnswers(t, pod, "tcp", etp, set(a.Name, b.Name))
					return
				}
				waitOnly(t, pod, "tcp", etp, set(a.Name), 20)
				waitSource(t, pod, etp, a.Name, client.Status.PodIP)
			})
			t.Run("externalTrafficPolicy Local from outside", func(t *testing.T) {
				if d.external {
					// Counted as a Pod, it may go to b on node 1, whose
					// reply does not come back through node 0: only a's
					// answers can be read.
					waitSource(t, ext, etp, a.Name, prov.ExternalClientIP())
					return
				}
				waitOnly(t, ext, "tcp", etp, set(a.Name), 20)
				waitSource(t, ext, etp, a.Name, prov.ExternalClientIP())
			})
		})
	}
}

// waitSource polls until server answers a request to target from a and
// reports want as the client's address.
func waitSource(t *testing.T, a asker, target, server, want string) {
	t.Helper()
	var last string
	retry.Eventually(t, time.Minute, fmt.Sprintf("%s from %s answered by %s, seeing client %s", target, a.where, server, want), func() error {
		got, err := a.ask("tcp", target, "hostname")
		if err != nil {
			return err
		}
		if got != server {
			return fmt.Errorf("answered by %s", got)
		}
		if got, err = a.ask("tcp", target, "clientip"); err != nil {
			return err
		}
		if last = clientHost(t, got); last != want {
			return fmt.Errorf("the backend saw client %s", last)
		}
		return nil
	})
}

// podGateway is a node's end of its Pods' veths: <Pod CIDR>.1.
func podGateway(t *testing.T, n provider.Node) string {
	t.Helper()
	_, podNet, err := net.ParseCIDR(n.PodCIDR)
	if err != nil {
		t.Fatal(err)
	}
	gw := podNet.IP.To4()
	gw[3] = 1
	return gw.String()
}

// restartProxyWith restarts a node's proxy (doorman's agent or kube-proxy)
// with extra flags until the test ends, then with the cluster's own.
func restartProxyWith(t *testing.T, nn *provider.NetNS, node string, flags ...string) {
	t.Helper()
	restart := func(flags ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		return nn.RestartProxyWith(ctx, node, flags...)
	}
	t.Cleanup(func() {
		if err := restart(); err != nil {
			t.Errorf("restart the proxy of %s without %v: %v", node, flags, err)
		}
	})
	if err := restart(flags...); err != nil {
		t.Fatalf("restart the proxy of %s with %v: %v", node, flags, err)
	}
}
