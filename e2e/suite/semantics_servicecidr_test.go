//go:build e2e

package suite

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/e2e/echo"
	"github.com/doorman-proxy/doorman/e2e/provider"
	"github.com/doorman-proxy/doorman/e2e/retry"
)

// SEMANTICS.md, "Reaching a Service": an address inside the cluster's
// Service CIDRs (ServiceCIDR objects, networking.k8s.io/v1) that no Service
// holds — dropped: a connection to it gets no answer at all, from a Pod
// and from a node, instead of being routed on. A second ServiceCIDR's range
// is dropped from its creation to its deletion.
//
// What the same connections do without the drop rule, observed on the
// netns cluster with node agents built without the two "daddr
// @service-cidrs drop" rules: a node's default route points at the
// gateway namespace, which forwards but has no route for the Service
// ranges and answers ICMP net unreachable, so the connection fails with
// "connect: network is unreachable" within about 1 s, both families (the
// error for the first SYN comes back while connect still holds the socket
// and counts as a soft error; the one for the SYN retransmitted after 1 s
// aborts the connection). Only the drop makes it time out, so the test
// tells the two apart by how long the failure took. The gateway also
// limits ICMP errors to one a second per host (IcmpOutRateLimitHost),
// which alone made IPv4 attempts time out without any drop rule; the test
// lifts that limit in the gateway namespace while it runs. On a real node the default route leads off the node and
// something there may answer: what upstream's "should be able to up and
// down services" saw.
//
// An allocated ClusterIP on a port its Service lacks is refused at once,
// not dropped: TestSemantics_UnknownPort_Rejected.
func TestSemantics_ServiceCIDR(t *testing.T) {
	track(t)
	servedServiceCIDRs(t)
	ctx := context.Background()
	cs := prov.Client()
	list, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list ServiceCIDRs: %v", err)
	}
	var ranges []netip.Prefix
	for _, c := range list.Items {
		for _, s := range c.Spec.CIDRs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				t.Fatalf("ServiceCIDR %s: %v", c.Name, err)
			}
			ranges = append(ranges, p.Masked())
		}
	}
	if len(ranges) == 0 {
		t.Fatal("no ServiceCIDR object holds a range: the API server makes \"kubernetes\" from --service-cluster-ip-range")
	}

	unlimitedGatewayICMP(t)
	ns := namespace(t)
	backends := echoDeployment(t, ns, "backend", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	clients := echoDeployment(t, ns, "client", 1, containerPort("http", corev1.ProtocolTCP, 8080))
	svc := service(t, ns, "backend", "backend", corev1.ServiceTypeClusterIP, tcpPort("http", 80, 8080))
	readyEndpoints(t, ns, "backend", 1)
	froms := []asker{fromPod(t, &clients[0]), fromNode(t, nodeNames(t, 1)[0])}
	// The ClusterIP answers: the nodes have their view, Service CIDRs
	// included, before anything below is judged.
	for _, from := range froms {
		waitAnswers(t, from, "tcp", addr(svc.Spec.ClusterIP, 80), podNames(backends))
	}

	for _, p := range ranges {
		ip := unallocatedAddr(t, p)
		for _, from := range froms {
			t.Run(fmt.Sprintf("unallocated %s of %s from %s", ip, p, from.where), func(t *testing.T) {
				target := addr(ip, 80)
				waitFails(t, from, "tcp", target, "dropped", timesOut(from, "tcp", target))
			})
		}
	}

	t.Run("a second ServiceCIDR, created and deleted", func(t *testing.T) {
		if *flagProxy == "kube-proxy" {
			// Its ServiceCIDR handler only records the ranges; the rule
			// that drops them is written by a full sync, hourly (seen
			// here: the new range still answered "unreachable" a minute
			// after it was created).
			skipAs(t, "not applicable with -e2e.proxy=kube-proxy", "kube-proxy v1.36 (nftables) applies a ServiceCIDR change only at its next full sync, up to an hour later")
		}
		// A /24 outside every range of the cluster (Services 10.96.0.0/12
		// here and on kind, Pods 10.244.0.0/16, nodes 10.250.0.0/24,
		// external addresses 10.251.0.0/16), one of 256 so that a run
		// killed before its clean-up does not blind the next.
		var b [1]byte
		_, _ = rand.Read(b[:])
		extra := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 252, b[0], 0}), 24)
		for _, p := range ranges {
			if p.Overlaps(extra) {
				t.Fatalf("%s overlaps the cluster's Service range %s", extra, p)
			}
		}
		ip := netip.AddrFrom4([4]byte{10, 252, b[0], 77}).String()
		target := addr(ip, 80)
		name := "e2e-extra-" + fmt.Sprintf("%02x", b[0])

		t.Run("before: not dropped", func(t *testing.T) {
			outsideRangesFailAtOnce(t)
			for _, from := range froms {
				waitFails(t, from, "tcp", target, "failing at once (nothing drops it)", failsAtOnce(from, "tcp", target))
			}
		})

		obj := &networkingv1.ServiceCIDR{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       networkingv1.ServiceCIDRSpec{CIDRs: []string{extra.String()}},
		}
		if _, err := cs.NetworkingV1().ServiceCIDRs().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create ServiceCIDR %s: %v", name, err)
		}
		deleted := false
		t.Cleanup(func() {
			if !deleted {
				_ = cs.NetworkingV1().ServiceCIDRs().Delete(context.Background(), name, metav1.DeleteOptions{})
			}
		})
		for _, from := range froms {
			t.Run("created: dropped from "+from.where, func(t *testing.T) {
				waitFails(t, from, "tcp", target, "dropped once "+extra.String()+" is a Service CIDR", timesOut(from, "tcp", target))
			})
		}

		if err := cs.NetworkingV1().ServiceCIDRs().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete ServiceCIDR %s: %v", name, err)
		}
		deleted = true
		// The ServiceCIDR controller lifts its finalizer once no Service
		// holds an address of the range (none ever did).
		retry.Eventually(t, time.Minute, "ServiceCIDR "+name+" gone", func() error {
			_, err := cs.NetworkingV1().ServiceCIDRs().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err == nil {
				return errors.New("still there")
			}
			return err
		})
		t.Run("deleted: no longer dropped", func(t *testing.T) {
			outsideRangesFailAtOnce(t)
			for _, from := range froms {
				waitFails(t, from, "tcp", target, "failing at once again (no longer dropped)", failsAtOnce(from, "tcp", target))
			}
		})
	})
}

// servedServiceCIDRs skips the test when the API server does not serve
// networking.k8s.io/v1 servicecidrs (Kubernetes older than 1.33).
func servedServiceCIDRs(t *testing.T) {
	t.Helper()
	rl, err := prov.Client().Discovery().ServerResourcesForGroupVersion("networking.k8s.io/v1")
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("discovery of networking.k8s.io/v1: %v", err)
	}
	if rl != nil {
		for _, r := range rl.APIResources {
			if r.Name == "servicecidrs" {
				return
			}
		}
	}
	skipAs(t, "not applicable without ServiceCIDR objects", "the API server does not serve networking.k8s.io/v1 servicecidrs (Kubernetes older than 1.33)")
}

// unlimitedGatewayICMP lifts the ICMP error rate limits of the netns
// cluster's gateway namespace until the test ends, so that every packet it
// cannot route is answered "unreachable" at once, not only one a second
// per host. Elsewhere it does nothing.
func unlimitedGatewayICMP(t *testing.T) {
	t.Helper()
	nn, ok := prov.(*provider.NetNS)
	if !ok {
		return
	}
	gw := nn.Prefix() + "-net" // the gateway namespace (e2e/cluster)
	files := []string{"/proc/sys/net/ipv4/icmp_ratelimit", "/proc/sys/net/ipv6/icmp/ratelimit"}
	inGateway := func(script string) string {
		out, err := exec.Command("ip", "netns", "exec", gw, "sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("in namespace %s: %s: %v: %s", gw, script, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	old := strings.Fields(inGateway("cat " + strings.Join(files, " ")))
	if len(old) != len(files) {
		t.Fatalf("ICMP rate limits of %s: %q", gw, old)
	}
	inGateway("echo 0 > " + files[0] + " && echo 0 > " + files[1])
	t.Cleanup(func() { inGateway("echo " + old[0] + " > " + files[0] + " && echo " + old[1] + " > " + files[1]) })
}

// outsideRangesFailAtOnce marks the part that needs an address outside
// every Service CIDR to fail at once: on the netns cluster the gateway
// answers ICMP net unreachable; the kind nodes drop whatever is bound
// outside the kind network and the Pod ranges (e2e/kind/cni.sh), so it
// times out there like a dropped one.
func outsideRangesFailAtOnce(t *testing.T) {
	t.Helper()
	onlyOn(t, "netns", "the kind nodes drop every address outside the kind network and the Pod ranges (e2e/kind/cni.sh): one outside the Service CIDRs times out there too")
}

// unallocatedAddr is an address of p that no Service holds: the highest
// one below the last (an IPv4 range's last is never handed out) that is no
// Service's ClusterIP.
func unallocatedAddr(t *testing.T, p netip.Prefix) string {
	t.Helper()
	svcs, err := prov.Client().CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list Services: %v", err)
	}
	used := map[netip.Addr]bool{}
	for _, s := range svcs.Items {
		for _, ip := range s.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				used[a] = true
			}
		}
	}
	a := lastAddrOf(p)
	for range 16 {
		a = a.Prev()
		if p.Contains(a) && !used[a] {
			return a.String()
		}
	}
	t.Fatalf("no unallocated address at the top of %s", p)
	return ""
}

func lastAddrOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		if bits := p.Bits() - i*8; bits < 8 {
			b[i] |= byte(0xff >> max(bits, 0))
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// droppedAfter is how long a failed request must have waited to count as
// unanswered: a dropped SYN is retransmitted after 1 s and 3 s, so a
// failure that comes back with the first retransmission still counts as
// an answer ("unreachable").
const droppedAfter = askTimeout * 3 / 4

// timesOut accepts a request that got no answer at all: neither refused
// nor failed early (no route, unreachable), still pending when its
// timeout ran out.
func timesOut(a asker, proto, target string) func(error) error {
	return func(error) error {
		took, err := timedAsk(a, proto, target)
		switch {
		case err == nil:
			return errors.New("answered")
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("refused, want no answer: %w", err)
		case took < droppedAfter:
			return fmt.Errorf("failed after %s, before the timeout, want no answer: %w", took.Round(time.Millisecond), err)
		}
		return nil
	}
}

// failsAtOnce accepts a request that failed before its timeout, whatever
// the reason (refused, unreachable): something answered it.
func failsAtOnce(a asker, proto, target string) func(error) error {
	return func(error) error {
		took, err := timedAsk(a, proto, target)
		switch {
		case err == nil:
			return errors.New("answered")
		case took >= droppedAfter:
			return fmt.Errorf("failed only after %s: %w", took.Round(time.Millisecond), err)
		}
		return nil
	}
}

// timedAsk asks once and says how long the failure or answer took where
// the request was sent from.
func timedAsk(a asker, proto, target string) (time.Duration, error) {
	start := time.Now()
	_, err := a.ask(proto, target, "hostname")
	took := time.Since(start)
	if remote, ok := echo.Took(err); ok {
		took = remote
	}
	return took, err
}
