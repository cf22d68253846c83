//go:build e2e

package suite

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"

	"github.com/doorman-proxy/doorman/e2e/retry"
)

// Upstream checklist: ports added and removed on a live Service.
func TestSemantics_PortsAddedRemovedLive(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2,
		containerPort("http", corev1.ProtocolTCP, 8080), containerPort("alt", corev1.ProtocolTCP, 8081), containerPort("dns", corev1.ProtocolUDP, 8082))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 2)
	c := fromPod(t, &clients[0])
	names := podNames(backends)
	waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 80), names)

	updateService(t, ns, "backend", func(s *corev1.Service) {
		s.Spec.Ports = append(s.Spec.Ports, tcpPort("alt", 81, 8081), udpPort("dns", 53, 8082))
	})
	t.Run("added tcp port", func(t *testing.T) { waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 81), names) })
	t.Run("added udp port", func(t *testing.T) { waitAnswers(t, c, "udp", addr(svc.Spec.ClusterIP, 53), names) })
	t.Run("first port still", func(t *testing.T) { waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 80), names) })

	updateService(t, ns, "backend", func(s *corev1.Service) { s.Spec.Ports = s.Spec.Ports[1:2] })
	t.Run("removed ports rejected", func(t *testing.T) {
		for _, tc := range []struct {
			proto string
			port  int32
		}{{"tcp", 80}, {"udp", 53}} {
			target := addr(svc.Spec.ClusterIP, tc.port)
			waitFails(t, c, tc.proto, target, "refused at once", refusedAtOnce(c, tc.proto, target))
		}
	})
	t.Run("remaining port still", func(t *testing.T) { waitAnswers(t, c, "tcp", addr(svc.Spec.ClusterIP, 81), names) })
}

// Upstream checklist: Services up and down — deleting one Service stops
// only its traffic; new ones work.
func TestSemantics_ServicesUpAndDown(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	c := fromPod(t, &clients[0])
	names := podNames(backends)
	ips := map[string]string{}
	for _, n := range []string{"up-1", "up-2", "up-3"} {
		ips[n] = service(t, ns, n, "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080)).Spec.ClusterIP
	}
	for _, n := range []string{"up-1", "up-2", "up-3"} {
		waitAnswers(t, c, "tcp", addr(ips[n], 80), names)
	}
	if err := prov.Client().CoreV1().Services(ns).Delete(context.Background(), "up-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Run("deleted Service stops", func(t *testing.T) {
		waitFails(t, c, "tcp", addr(ips["up-2"], 80), "gone", anyError)
	})
	t.Run("others untouched", func(t *testing.T) {
		for _, n := range []string{"up-1", "up-3"} {
			if counts := sample(t, c, "tcp", addr(ips[n], 80), 10); len(counts) == 0 {
				t.Errorf("%s: no answers", n)
			}
		}
	})
	t.Run("new Service up", func(t *testing.T) {
		ip := service(t, ns, "up-4", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080)).Spec.ClusterIP
		waitAnswers(t, c, "tcp", addr(ip, 80), names)
	})
}

// Upstream checklist: Service recreated — deleted and created again with
// the same name and the same ClusterIP, it works again.
func TestSemantics_ServiceRecreated(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	c := fromPod(t, &clients[0])
	names := podNames(backends)
	svc := service(t, ns, "again", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	target := addr(svc.Spec.ClusterIP, 80)
	waitAnswers(t, c, "tcp", target, names)
	ctx := context.Background()
	if err := prov.Client().CoreV1().Services(ns).Delete(ctx, "again", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFails(t, c, "tcp", target, "gone with its Service", anyError)
	// The ClusterIP is released asynchronously: retry until it is free.
	retry.Eventually(t, 30*time.Second, "recreate "+ns+"/again with ClusterIP "+svc.Spec.ClusterIP, func() error {
		_, err := prov.Client().CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "again"},
			Spec: corev1.ServiceSpec{
				ClusterIP: svc.Spec.ClusterIP,
				Selector:  map[string]string{"app": "backend"},
				Ports:     []corev1.ServicePort{tcpPort("http", 80, 8080)},
			},
		}, metav1.CreateOptions{})
		return err
	})
	waitAnswers(t, c, "tcp", target, names)
}

// Upstream checklist: type changes ExternalName ↔ ClusterIP ↔ NodePort.
func TestSemantics_TypeChanges(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 2, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	c, ext := fromPod(t, &clients[0]), fromExternal(t)
	names := podNames(backends)
	nodeIP := prov.Nodes()[0].IP
	createService(t, ns, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "flip"},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "backend.example.com",
			Ports:        []corev1.ServicePort{tcpPort("http", 80, 8080)},
		},
	})
	assertNotProgrammedAfterWitness(t, ns, "flip")

	svc := updateService(t, ns, "flip", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.ExternalName = ""
		s.Spec.Selector = map[string]string{"app": "backend"}
	})
	clusterIP := addr(svc.Spec.ClusterIP, 80)
	t.Run("ExternalName to ClusterIP", func(t *testing.T) { waitAnswers(t, c, "tcp", clusterIP, names) })

	svc = updateService(t, ns, "flip", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
	nodePort := addr(nodeIP, svc.Spec.Ports[0].NodePort)
	t.Run("ClusterIP to NodePort", func(t *testing.T) {
		waitAnswers(t, ext, "tcp", nodePort, names)
		waitAnswers(t, c, "tcp", clusterIP, names)
	})

	updateService(t, ns, "flip", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	})
	t.Run("NodePort to ClusterIP", func(t *testing.T) {
		waitFails(t, ext, "tcp", nodePort, "the NodePort gone", anyError)
		waitAnswers(t, c, "tcp", clusterIP, names)
	})

	updateService(t, ns, "flip", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeExternalName
		s.Spec.ExternalName = "backend.example.com"
		s.Spec.Selector = nil
		s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
		s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = nil, nil
		s.Spec.InternalTrafficPolicy = nil
		s.Spec.SessionAffinity = ""
	})
	t.Run("ClusterIP to ExternalName", func(t *testing.T) {
		waitFails(t, c, "tcp", clusterIP, "the ClusterIP gone", anyError)
		for _, n := range prov.Nodes() {
			retry.Eventually(t, 30*time.Second, "agent on "+n.Name+" dropping "+ns+"/flip", func() error {
				ks, err := agentKeys(n.Name, ns, "flip")
				if err != nil {
					return err
				}
				if len(ks) != 0 {
					return fmt.Errorf("holds %v", ks)
				}
				return nil
			})
		}
	})
}

// Upstream checklist: UDP preserved while the server Pod cycles — a
// client sending from one socket reaches the replacement Pod once the old
// one is gone (ClusterIP and NodePort).
func TestSemantics_UDP_PreservedWhileServerPodCycles(t *testing.T) {
	track(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 1, containerPort("dns", corev1.ProtocolUDP, 8081))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort, udpPort("dns", 53, 8081))
	c := fromPod(t, &clients[0])
	ext := fromExternal(t)
	clusterIP := addr(svc.Spec.ClusterIP, 53)
	nodePort := addr(prov.Nodes()[0].IP, svc.Spec.Ports[0].NodePort)
	old := set(backends[0].Name)
	waitAnswers(t, c, "udp", clusterIP, old)
	waitAnswers(t, ext, "udp", nodePort, old)
	flows := map[string]*flow{
		"ClusterIP": c.openFlow(t, "udp", clusterIP),
		"NodePort":  ext.openFlow(t, "udp", nodePort),
	}
	for _, f := range flows {
		waitFlowAnswer(t, f, old, 10*time.Second)
	}
	deletePod(t, ns, backends[0].Name, 0)
	fresh := readyPods(t, ns, "app=backend", 1)
	if fresh[0].Name == backends[0].Name {
		t.Fatalf("the replacement Pod has the old name %s", fresh[0].Name)
	}
	for name, f := range flows {
		t.Run(name, func(t *testing.T) { waitFlowAnswer(t, f, set(fresh[0].Name), 30*time.Second) })
	}
}

// Upstream checklist: proxy restarted without disruption — while a node's
// agent stops and starts again, traffic through that node keeps flowing
// (the kernel keeps its rules), and changes made meanwhile land after.
func TestSemantics_AgentRestart_NoDisruption(t *testing.T) {
	track(t)
	doormanOnly(t)
	nn := netnsCluster(t, "stops and starts a node agent as a process; on kind the DaemonSet's rollout restart is the same fault, run by the fault tests")
	ns := namespace(t)
	nodes := nodeNames(t, 2)
	labels := map[string]string{"app": "backend"}
	ports := []corev1.ContainerPort{containerPort("http", corev1.ProtocolTCP, 8080), containerPort("dns", corev1.ProtocolUDP, 8081)}
	a := echoPod(t, ns, "a", nodes[0], labels, 2, ports...)
	b := echoPod(t, ns, "b", nodes[1], labels, 2, ports...)
	client := echoPod(t, ns, "client", nodes[0], nil, 2, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeNodePort, tcpPort("http", 80, 8080), udpPort("dns", 53, 8081))
	names := set(a.Name, b.Name)
	c, ext := fromPod(t, &client), fromExternal(t)
	node := nodeOf(t, nodes[0])
	probes := []struct {
		a             asker
		proto, target string
	}{
		{c, "tcp", addr(svc.Spec.ClusterIP, 80)},
		{c, "udp", addr(svc.Spec.ClusterIP, 53)},
		{ext, "tcp", addr(node.IP, svc.Spec.Ports[0].NodePort)},
		{ext, "udp", addr(node.IP, svc.Spec.Ports[1].NodePort)},
	}
	for _, p := range probes {
		waitAnswers(t, p.a, p.proto, p.target, names)
	}

	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		ok, fail atomic.Int64
		mu       sync.Mutex
		errs     []string
	)
	for _, p := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				got, err := p.a.ask(p.proto, p.target, "hostname")
				if err == nil && names[got] {
					ok.Add(1)
					continue
				}
				fail.Add(1)
				mu.Lock()
				if len(errs) < 5 {
					errs = append(errs, fmt.Sprintf("%s %s: %q %v", p.proto, p.target, got, err))
				}
				mu.Unlock()
			}
		}()
	}
	stopProbes := func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(stopProbes)

	time.Sleep(time.Second)
	nn.StopAgent(nodes[0])
	t.Cleanup(func() {
		// Never leave the node without an agent for the tests after.
		if _, err := agentKeys(nodes[0], ns, "backend"); err != nil {
			_ = nn.StartAgent(nodes[0])
		}
	})
	// A change while the agent is down.
	later := service(t, ns, "later", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	time.Sleep(2 * time.Second)
	if err := nn.StartAgent(nodes[0]); err != nil {
		t.Fatal(err)
	}
	retry.Eventually(t, time.Minute, "agent on "+nodes[0]+" back, connected and holding its kernel", func() error {
		return agentInspect(nodes[0], func(ctx context.Context, c doormanv1.AgentInspectServiceClient) error {
			st, err := c.GetState(ctx, &doormanv1.GetStateRequest{})
			if err != nil {
				return err
			}
			if !st.GetConnected() || !st.GetKernelReady() {
				return fmt.Errorf("connected=%t kernel_ready=%t", st.GetConnected(), st.GetKernelReady())
			}
			return nil
		})
	})
	t.Run("change made while down lands", func(t *testing.T) {
		waitAnswers(t, c, "tcp", addr(later.Spec.ClusterIP, 80), names)
	})
	time.Sleep(time.Second)
	stopProbes()
	t.Logf("%d requests through %s while its agent restarted, %d failed", ok.Load(), nodes[0], fail.Load())
	if fail.Load() != 0 {
		t.Errorf("%d of %d requests failed during the restart: %s", fail.Load(), ok.Load()+fail.Load(), strings.Join(errs, "; "))
	}
	if ok.Load() < 40 {
		t.Errorf("only %d requests made: the probes did not run", ok.Load())
	}
}
