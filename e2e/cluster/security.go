package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// What a secured cluster (Config.Secure) uses, as deploy/ does.
const (
	DoormanNamespace    = "doorman-system"
	AgentServiceAccount = "doorman-nodeagent"
	TokenAudience       = "doorman"
	CAConfigMap         = "doorman-ca"
	// ControlPlaneServerName is the name agents check on the control
	// plane's certificate (its Service's cluster name; nothing resolves it).
	ControlPlaneServerName = "doorman-controlplane.doorman-system.svc"
)

// AgentPodName is the Pod that stands for a node's agent in a secured
// cluster: the agents run as processes, but their tokens are bound to a
// Pod on their node, as the kubelet's projected tokens are.
func AgentPodName(node string) string { return "doorman-nodeagent-" + node }

// controlPlaneSecurityArgs prepares what the control plane's checks need
// (the namespace, the agents' ServiceAccount) and returns its flags.
func (c *Cluster) controlPlaneSecurityArgs(ctx context.Context) ([]string, error) {
	if !c.cfg.Secure {
		return []string{"--insecure"}, nil
	}
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: DoormanNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create namespace %s: %w", DoormanNamespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: DoormanNamespace, Name: AgentServiceAccount}}
	if _, err := c.client.CoreV1().ServiceAccounts(DoormanNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account %s/%s: %w", DoormanNamespace, AgentServiceAccount, err)
	}
	return []string{
		"--namespace=" + DoormanNamespace,
		"--agent-service-account=" + AgentServiceAccount,
		"--token-audience=" + TokenAudience,
		"--tls-san=" + GatewayIP + ",127.0.0.1",
	}, nil
}

// writeCA saves the CA the control plane published, for the agents'
// --ca-file and for tests.
func (c *Cluster) writeCA(ctx context.Context) error {
	if !c.cfg.Secure {
		return nil
	}
	cm, err := c.client.CoreV1().ConfigMaps(DoormanNamespace).Get(ctx, CAConfigMap, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the control plane's ca: %w", err)
	}
	return os.WriteFile(c.CAFile(), []byte(cm.Data["ca.crt"]), 0o644)
}

// Secure reports whether doorman's gRPC runs with TLS and authentication.
func (c *Cluster) Secure() bool { return c.cfg.Secure }

// CAFile is the control plane's CA certificate (PEM) in a secured cluster.
func (c *Cluster) CAFile() string { return filepath.Join(c.work, "doorman-ca.crt") }

// agentSecurityArgs returns a node agent's flags: in a secured cluster a
// fresh token bound to the node's agent Pod, written to a file, and the CA.
func (c *Cluster) agentSecurityArgs(n Node, dir string) ([]string, error) {
	if !c.cfg.Secure {
		return []string{"--insecure"}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token, err := c.AgentToken(ctx, n.Name, TokenAudience, time.Hour)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		return nil, err
	}
	return []string{"--token-file=" + path, "--ca-file=" + c.CAFile(), "--server-name=" + ControlPlaneServerName}, nil
}

// EnsureAgentPod creates (if missing) the Pod standing for a node's agent:
// ServiceAccount doorman-nodeagent, bound to the node. The node simulator
// runs it like any Pod (it has no ports).
func (c *Cluster) EnsureAgentPod(ctx context.Context, node string) (*corev1.Pod, error) {
	pods := c.client.CoreV1().Pods(DoormanNamespace)
	pod, err := pods.Get(ctx, AgentPodName(node), metav1.GetOptions{})
	if err == nil {
		return pod, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	pod, err = pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: DoormanNamespace, Name: AgentPodName(node), Labels: map[string]string{"app.kubernetes.io/name": "doorman-nodeagent"}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			ServiceAccountName:            AgentServiceAccount,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Containers:                    []corev1.Container{{Name: "nodeagent", Image: "doorman.local/nodeagent:e2e"}},
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return pods.Get(ctx, AgentPodName(node), metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create agent pod for %s: %w", node, err)
	}
	return pod, nil
}

// AgentToken requests a token of the agents' ServiceAccount for an
// audience, bound to the node's agent Pod (so the API server puts the
// node's name in it), as the kubelet's projected volume does.
func (c *Cluster) AgentToken(ctx context.Context, node, audience string, ttl time.Duration) (string, error) {
	pod, err := c.EnsureAgentPod(ctx, node)
	if err != nil {
		return "", err
	}
	tr, err := c.client.CoreV1().ServiceAccounts(DoormanNamespace).CreateToken(ctx, AgentServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To(int64(ttl / time.Second)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s's agent: %w", node, err)
	}
	return tr.Status.Token, nil
}
