package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
)

// agentTokenTTL is the expiry of the projected token in deploy/base's
// DaemonSet (expirationSeconds: 3600).
const agentTokenTTL = time.Hour

// agentCredentials makes what each simulated node's agent presents in a
// secured cluster, as the kubelet does for the real DaemonSet: a Pod of the
// agents' ServiceAccount bound to the node, and a token of audience
// doorman bound to that Pod (TokenRequest). Pods are created, then tokens
// requested, by a bounded pool of parallel API writers. It returns the
// tokens by node index.
func agentCredentials(ctx context.Context, client kubernetes.Interface, n, workers int) ([]string, error) {
	tokens := make([]string, n)
	err := forEachParallel(ctx, n, workers, func(ctx context.Context, i int) error {
		pod, err := createAgentPod(ctx, client, simNodeName(i))
		if err != nil {
			return err
		}
		tr, err := retryCreate(ctx, func() (*authenticationv1.TokenRequest, error) {
			return client.CoreV1().ServiceAccounts(cluster.DoormanNamespace).CreateToken(ctx, cluster.AgentServiceAccount, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					Audiences:         []string{cluster.TokenAudience},
					ExpirationSeconds: ptr.To(int64(agentTokenTTL / time.Second)),
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				},
			}, metav1.CreateOptions{})
		})
		if err != nil {
			return fmt.Errorf("token for %s's agent: %w", pod.Spec.NodeName, err)
		}
		tokens[i] = tr.Status.Token
		return nil
	})
	return tokens, err
}

// createAgentPod creates the Pod standing for a node's agent (nothing runs
// it: the simulated nodes have no kubelet), or returns the one there is.
func createAgentPod(ctx context.Context, client kubernetes.Interface, node string) (*corev1.Pod, error) {
	pods := client.CoreV1().Pods(cluster.DoormanNamespace)
	pod, err := retryCreate(ctx, func() (*corev1.Pod, error) {
		return pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: cluster.DoormanNamespace, Name: cluster.AgentPodName(node), Labels: map[string]string{"app.kubernetes.io/name": "doorman-nodeagent"}},
			Spec: corev1.PodSpec{
				NodeName:                      node,
				ServiceAccountName:            cluster.AgentServiceAccount,
				AutomountServiceAccountToken:  ptr.To(false),
				TerminationGracePeriodSeconds: ptr.To(int64(0)),
				Containers:                    []corev1.Container{{Name: "nodeagent", Image: "doorman.local/nodeagent:bench"}},
			},
		}, metav1.CreateOptions{})
	})
	if apierrors.IsAlreadyExists(err) {
		return pods.Get(ctx, cluster.AgentPodName(node), metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create agent pod for %s: %w", node, err)
	}
	return pod, nil
}

// forEachParallel calls f for 0..n-1 from workers goroutines and returns
// the first error, after which no new call starts.
func forEachParallel(ctx context.Context, n, workers int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// controlPlaneCA reads the CA certificate the control plane publishes to
// the agents (the ConfigMap deploy/base's agents read).
func controlPlaneCA(ctx context.Context, client kubernetes.Interface) (*x509.CertPool, error) {
	cm, err := client.CoreV1().ConfigMaps(cluster.DoormanNamespace).Get(ctx, cluster.CAConfigMap, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the control plane's ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(cm.Data["ca.crt"])) {
		return nil, fmt.Errorf("the control plane's ca: no PEM certificate in %s/%s", cluster.DoormanNamespace, cluster.CAConfigMap)
	}
	return pool, nil
}

// agentTLS is the agent's transport to a secured control plane: TLS 1.3,
// the control plane's CA, and the name its Service gives its certificate.
func agentTLS(ca *x509.CertPool) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: ca, ServerName: cluster.ControlPlaneServerName})
}

// bearerToken sends an agent's token on every call as the agent's
// credentials do: "authorization: Bearer <token>", over TLS only.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return true }

// dialOptions are an agent's options to its control planes: from its own
// loopback address (the control plane budgets failed reviews per remote
// address, and real agents each have their node's); over TLS with its
// token, or, with no CA, in plaintext with no token as an --insecure
// agent.
func (a *simAgent) dialOptions(ca *x509.CertPool) []grpc.DialOption {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: a.source}}
	opts := []grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }),
		grpc.WithStatsHandler(agentStats{a}),
	}
	if ca == nil {
		return append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	return append(opts, grpc.WithTransportCredentials(agentTLS(ca)), grpc.WithPerRPCCredentials(bearerToken(a.token)))
}

// simSourceIP is node i's agent's address on loopback (the whole of
// 127.0.0.0/8 is local), mirroring its InternalIP 10.252.x.y.
func simSourceIP(i int) net.IP { return net.IPv4(127, 252, byte(i/250), byte(i%250+1)) }

// Reconnect delays of the node agent (nodeagent/internal/stream).
const (
	agentMinBackoff = 100 * time.Millisecond
	agentMaxBackoff = 5 * time.Second
)

// agentBackoff is the agent's delay before its next attempt after failures
// attempts in a row: the minimum doubled per failure, capped, then spread
// by jitter over its upper half.
func agentBackoff(failures int) time.Duration {
	d := agentMinBackoff
	for i := 0; i < failures && d < agentMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, agentMaxBackoff)
	return d/2 + time.Duration(rand.Float64()*float64(d/2))
}

// admissionCounts are what admitting agents cost so far.
type admissionCounts struct {
	reviews float64 // TokenReviews the API server answered
	// Streams ended before their first update: refused (Unauthenticated,
	// PermissionDenied, ResourceExhausted: the per-peer budget), or told
	// to come back (Unavailable: a review over the rate, the API server
	// unreachable, or the replica not serving yet or going away).
	refused, unavailable int64
}

func (s *scaleSim) admissionCounts(ctx context.Context) (admissionCounts, error) {
	reviews, err := tokenReviews(ctx, s.client)
	if err != nil {
		return admissionCounts{}, err
	}
	return admissionCounts{
		reviews:     reviews,
		refused:     s.firstRecv[codes.Unauthenticated].Load() + s.firstRecv[codes.PermissionDenied].Load() + s.firstRecv[codes.ResourceExhausted].Load(),
		unavailable: s.firstRecv[codes.Unavailable].Load(),
	}, nil
}

// addAdmission records what admission cost in a phase, since before, and
// describes it.
func (s *scaleSim) addAdmission(ctx context.Context, system string, phase admission, before admissionCounts) (string, error) {
	after, err := s.admissionCounts(ctx)
	if err != nil {
		return "", err
	}
	reviews, refused, unavailable := after.reviews-before.reviews, after.refused-before.refused, after.unavailable-before.unavailable
	s.rep.add(system, s.f.services, phase.reviews, reviews)
	s.rep.add(system, s.f.services, phase.refused, float64(refused))
	s.rep.add(system, s.f.services, phase.unavailable, float64(unavailable))
	return fmt.Sprintf("%.0f TokenReviews, %d streams refused, %d unavailable before their first update", reviews, refused, unavailable), nil
}

// tokenReviews is the number of TokenReviews the API server answered.
func tokenReviews(ctx context.Context, client kubernetes.Interface) (float64, error) {
	b, err := client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("api server metrics: %w", err)
	}
	return countTokenReviews(string(b))
}

// countTokenReviews sums the TokenReview creations of an API server's
// apiserver_request_total, over every response code.
func countTokenReviews(metrics string) (float64, error) {
	var n float64
	for _, l := range strings.Split(metrics, "\n") {
		rest, ok := strings.CutPrefix(l, "apiserver_request_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || !strings.Contains(labels, `resource="tokenreviews"`) || !strings.Contains(labels, `verb="POST"`) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return 0, fmt.Errorf("api server metrics: %q: %w", l, err)
		}
		n += v
	}
	return n, nil
}
