package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/echo"
)

// simulator plays scheduler and kubelet for the cluster's nodes.
type simulator struct {
	c   *Cluster
	log hclog.Logger

	factory informers.SharedInformerFactory
	lister  listersv1.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	wg      sync.WaitGroup

	mu       sync.Mutex
	pods     map[string]*simPod // by namespace/name
	nextNode int
	seq      int
	used     map[string]bool // Pod IPs in use
}

// simPod is one running simulated Pod.
type simPod struct {
	uid         types.UID
	node        Node
	netns       string // "" for hostNetwork Pods (they use the node's)
	hostVeth    string
	ip          string
	ip6         string
	srv         *echo.Server
	terminating bool
}

func newSimulator(c *Cluster, log hclog.Logger) *simulator {
	return &simulator{
		c:     c,
		log:   log,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		pods:  map[string]*simPod{},
		used:  map[string]bool{},
	}
}

func (s *simulator) start(ctx context.Context) error {
	s.factory = informers.NewSharedInformerFactory(s.c.client, 0)
	inf := s.factory.Core().V1().Pods()
	s.lister = inf.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	s.factory.Start(ctx.Done())
	for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("sync %v informer", typ)
		}
	}
	for range 4 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for s.next(ctx) {
			}
		}()
	}
	return nil
}

func (s *simulator) next(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	if err := s.reconcile(ctx, key); err != nil {
		if ctx.Err() != nil {
			return true
		}
		s.log.Warn("pod sync failed, retrying", "pod", key, "error", err)
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

// stop ends the workers and tears every Pod namespace down.
func (s *simulator) stop() {
	s.queue.ShutDown()
	s.wg.Wait()
	if s.factory != nil {
		s.factory.Shutdown()
	}
	s.mu.Lock()
	pods := s.pods
	s.pods = map[string]*simPod{}
	s.mu.Unlock()
	for key, p := range pods {
		s.teardown(key, p)
	}
}

func (s *simulator) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := s.lister.Pods(ns).Get(name)
	s.mu.Lock()
	sp := s.pods[key]
	s.mu.Unlock()
	if apierrors.IsNotFound(err) {
		if sp != nil {
			s.remove(key, sp)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if sp != nil && sp.uid != pod.UID {
		s.remove(key, sp) // a new Pod with the same name
		sp = nil
	}
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp != nil {
			return nil
		}
		return s.bind(ctx, pod)
	}
	node, ours := s.c.node(pod.Spec.NodeName)
	if !ours || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		if sp == nil {
			return s.forceDelete(ctx, pod.Namespace, pod.Name, pod.UID)
		}
		s.mu.Lock()
		already := sp.terminating
		sp.terminating = true
		s.mu.Unlock()
		if !already {
			grace := time.Duration(ptr.Deref(pod.DeletionGracePeriodSeconds, 30)) * time.Second
			s.log.Debug("pod terminating", "pod", key, "grace", grace)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				select {
				case <-ctx.Done():
					return
				case <-time.After(grace):
				}
				s.remove(key, sp)
				if err := s.forceDelete(ctx, pod.Namespace, pod.Name, pod.UID); err != nil && ctx.Err() == nil {
					s.log.Warn("delete terminated pod failed", "pod", key, "error", err)
				}
			}()
		}
		return nil
	}
	if sp != nil {
		return nil // running
	}
	return s.run(ctx, key, pod, node)
}

// bind picks a node as a scheduler would: the nodes matching the Pod's
// nodeSelector, round-robin.
func (s *simulator) bind(ctx context.Context, pod *corev1.Pod) error {
	var fit []Node
	for _, n := range s.c.nodes {
		if matchesSelector(n, pod.Spec.NodeSelector) {
			fit = append(fit, n)
		}
	}
	if len(fit) == 0 {
		s.log.Warn("no node fits pod", "pod", pod.Namespace+"/"+pod.Name, "nodeSelector", pod.Spec.NodeSelector)
		return nil
	}
	s.mu.Lock()
	n := fit[s.nextNode%len(fit)]
	s.nextNode++
	s.mu.Unlock()
	err := s.c.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: n.Name},
	}, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone or already bound: the next event says what to do
	}
	if err != nil {
		return fmt.Errorf("bind %s/%s to %s: %w", pod.Namespace, pod.Name, n.Name, err)
	}
	return nil
}

func matchesSelector(n Node, sel map[string]string) bool {
	labels := map[string]string{
		"kubernetes.io/hostname":      n.Name,
		"kubernetes.io/os":            "linux",
		"topology.kubernetes.io/zone": n.Zone,
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// allocIP picks a free IPv4 address in the node's Pod CIDR and its IPv6
// twin (same host number) in the node's IPv6 Pod CIDR.
func (s *simulator) allocIP(n Node) (ip4, ip6 string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := net.ParseIP(n.PodCIDR[:len(n.PodCIDR)-len("0/24")] + "0").To4()
	base6, err := netip.ParsePrefix(n.PodCIDR6)
	if err != nil {
		return "", "", fmt.Errorf("node %s: Pod CIDR %s: %w", n.Name, n.PodCIDR6, err)
	}
	for i := 2; i < 255; i++ {
		ip := net.IPv4(base[0], base[1], base[2], byte(i)).String()
		if !s.used[ip] {
			s.used[ip] = true
			b := base6.Addr().As16()
			b[15] = byte(i)
			return ip, netip.AddrFrom16(b).String(), nil
		}
	}
	return "", "", fmt.Errorf("node %s: Pod CIDR %s exhausted", n.Name, n.PodCIDR)
}

func (s *simulator) run(ctx context.Context, key string, pod *corev1.Pod, n Node) (err error) {
	sp := &simPod{uid: pod.UID, node: n, srv: echo.NewServer(pod.Name)}
	defer func() {
		if err != nil {
			s.teardown(key, sp)
		}
	}()
	serveNS := n.NetNS
	if pod.Spec.HostNetwork {
		sp.ip, sp.ip6 = n.IP, n.IP6
	} else {
		if sp.ip, sp.ip6, err = s.allocIP(n); err != nil {
			return err
		}
		s.mu.Lock()
		s.seq++
		seq := s.seq
		s.mu.Unlock()
		sp.netns = fmt.Sprintf("%s-p%d", s.c.cfg.Prefix, seq)
		sp.hostVeth = fmt.Sprintf("vp%d", seq)
		if err := s.plumb(n, sp); err != nil {
			return fmt.Errorf("pod %s network: %w", key, err)
		}
		serveNS = sp.netns
	}
	if err := s.serve(serveNS, sp, pod); err != nil {
		return fmt.Errorf("pod %s servers: %w", key, err)
	}
	s.mu.Lock()
	s.pods[key] = sp
	s.mu.Unlock()
	if err := s.reportRunning(ctx, pod, n, sp.ip, sp.ip6); err != nil {
		s.mu.Lock()
		delete(s.pods, key)
		s.mu.Unlock()
		return err
	}
	s.log.Debug("pod running", "pod", key, "node", n.Name, "ip", sp.ip, "ip6", sp.ip6)
	return nil
}

// plumb gives the Pod a namespace and a point-to-point veth into its node:
//
//	pod:  eth0 <podIP>/32, route <gw> dev eth0, default via <gw>
//	      eth0 <podIP6>/128, default via fe80::1 dev eth0
//	node: vpN  <gw>/32,    route <podIP>/32 dev vpN
//	      vpN  fe80::1/64, route <podIP6>/128 dev vpN
func (s *simulator) plumb(n Node, sp *simPod) error {
	gw := n.PodCIDR[:len(n.PodCIDR)-len("0/24")] + "1"
	if err := addNetNS(sp.netns); err != nil {
		return err
	}
	if err := setSysctls(sp.netns, noDADSysctls...); err != nil {
		return err
	}
	nodeL, err := openNS(n.NetNS)
	if err != nil {
		return err
	}
	defer nodeL.Close()
	podL, err := openNS(sp.netns)
	if err != nil {
		return err
	}
	defer podL.Close()
	if err := nodeL.veth(sp.hostVeth, "", podL, "eth0"); err != nil {
		return err
	}
	for _, step := range []func() error{
		func() error { return nodeL.addAddr(sp.hostVeth, gw+"/32") },
		func() error { return nodeL.route(sp.ip+"/32", "", sp.hostVeth, true) },
		func() error { return nodeL.addAddr(sp.hostVeth, podGatewayIP6+"/64") },
		func() error { return nodeL.route(sp.ip6+"/128", "", sp.hostVeth, false) },
		func() error { return podL.up("lo") },
		func() error { return podL.up("eth0") },
		func() error { return podL.addAddr("eth0", sp.ip+"/32") },
		func() error { return podL.route(gw+"/32", "", "eth0", true) },
		func() error { return podL.route("default", gw, "eth0", false) },
		func() error { return podL.addAddr("eth0", sp.ip6+"/128") },
		func() error { return podL.route("default", podGatewayIP6, "eth0", false) },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (s *simulator) serve(ns string, sp *simPod, pod *corev1.Pod) error {
	return inNetNS(ns, func() error {
		for _, ctr := range pod.Spec.Containers {
			for _, p := range ctr.Ports {
				addr := net.JoinHostPort("", strconv.Itoa(int(p.ContainerPort)))
				switch p.Protocol {
				case corev1.ProtocolTCP, "":
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						return fmt.Errorf("listen tcp %s: %w", addr, err)
					}
					sp.srv.ServeTCP(ln)
				case corev1.ProtocolUDP:
					pc, err := net.ListenPacket("udp", addr)
					if err != nil {
						return fmt.Errorf("listen udp %s: %w", addr, err)
					}
					sp.srv.ServeUDP(pc)
				default:
					s.log.Warn("protocol not served", "pod", pod.Namespace+"/"+pod.Name, "protocol", p.Protocol, "port", p.ContainerPort)
				}
			}
		}
		return nil
	})
}

func (s *simulator) reportRunning(ctx context.Context, pod *corev1.Pod, n Node, ip, ip6 string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		now := metav1.Now()
		cur.Status.Phase = corev1.PodRunning
		cur.Status.HostIP = n.IP
		cur.Status.HostIPs = []corev1.HostIP{{IP: n.IP}, {IP: n.IP6}}
		cur.Status.PodIP = ip
		cur.Status.PodIPs = []corev1.PodIP{{IP: ip}, {IP: ip6}}
		cur.Status.StartTime = &now
		cur.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		cur.Status.ContainerStatuses = nil
		for _, ctr := range cur.Spec.Containers {
			cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
				Name:        ctr.Name,
				Ready:       true,
				Started:     ptr.To(true),
				State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
				Image:       ctr.Image,
				ImageID:     "doorman-e2e://" + ctr.Image,
				ContainerID: "doorman-e2e://" + string(cur.UID) + "/" + ctr.Name,
			})
		}
		_, err = s.c.client.CoreV1().Pods(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

func (s *simulator) forceDelete(ctx context.Context, ns, name string, uid types.UID) error {
	err := s.c.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// remove forgets a Pod and tears its namespace down.
func (s *simulator) remove(key string, sp *simPod) {
	s.mu.Lock()
	if s.pods[key] == sp {
		delete(s.pods, key)
	}
	s.mu.Unlock()
	s.teardown(key, sp)
}

func (s *simulator) teardown(key string, sp *simPod) {
	if err := sp.srv.Close(); err != nil {
		s.log.Debug("close pod servers", "pod", key, "error", err)
	}
	if sp.netns != "" {
		if err := delNetNS(sp.netns); err != nil {
			s.log.Warn("delete pod namespace", "pod", key, "error", err)
		}
	}
	if sp.ip != "" && sp.ip != sp.node.IP {
		s.mu.Lock()
		delete(s.used, sp.ip)
		s.mu.Unlock()
	}
}

func (s *simulator) netnsOf(ns, name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp := s.pods[ns+"/"+name]
	if sp == nil {
		return "", fmt.Errorf("pod %s/%s is not running on a simulated node", ns, name)
	}
	if sp.netns == "" {
		return sp.node.NetNS, nil
	}
	return sp.netns, nil
}

// SetPodReady sets a running Pod's Ready condition, as a readiness probe
// that starts or stops passing would.
func (c *Cluster) SetPodReady(ctx context.Context, ns, name string, ready bool) error {
	if _, err := c.sim.netnsOf(ns, name); err != nil {
		return err
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		for i := range pod.Status.Conditions {
			cond := &pod.Status.Conditions[i]
			if (cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady) && cond.Status != status {
				cond.Status = status
				cond.LastTransitionTime = now
			}
		}
		for i := range pod.Status.ContainerStatuses {
			pod.Status.ContainerStatuses[i].Ready = ready
		}
		_, err = c.client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// PodNetNS names the network namespace of a running Pod.
func (c *Cluster) PodNetNS(ns, name string) (string, error) { return c.sim.netnsOf(ns, name) }

// DialFromPod returns a dialer whose connections start in the Pod.
func (c *Cluster) DialFromPod(ns, name string) (echo.Dialer, error) {
	nsName, err := c.sim.netnsOf(ns, name)
	if err != nil {
		return nil, err
	}
	return dialerIn(nsName), nil
}

// DialFromNode returns a dialer whose connections start on the node itself.
func (c *Cluster) DialFromNode(node string) (echo.Dialer, error) {
	n, ok := c.node(node)
	if !ok {
		return nil, fmt.Errorf("no node %q", node)
	}
	return dialerIn(n.NetNS), nil
}

// DialFromExternal returns a dialer whose connections start in the external
// client namespace on the node network.
func (c *Cluster) DialFromExternal() echo.Dialer { return dialerIn(c.extNS) }
