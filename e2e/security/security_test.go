//go:build e2e

package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// dial connects to the control plane over TLS, trusting the CA it
// published, or in plaintext.
func dial(t *testing.T, secure bool) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if secure {
		pem, err := os.ReadFile(c.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("%s: no certificate", c.CAFile())
		}
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: cluster.ControlPlaneServerName, MinVersion: tls.VersionTLS13})
	}
	cc, err := grpc.NewClient("passthrough:///"+c.ControlPlaneGRPC(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// hello opens a Sync stream as node and returns the first update.
func hello(ctx context.Context, cc *grpc.ClientConn, token, node string) (*doormanv1.SyncResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	stream, err := doormanv1.NewAgentServiceClient(cc).Sync(withToken(ctx, token))
	if err != nil {
		return nil, err
	}
	err = stream.Send(&doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: node}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return stream.Recv()
}

// serviceAccountToken creates a ServiceAccount (if missing) and a token of
// it for an audience, bound to nothing.
func serviceAccountToken(t *testing.T, ns, name, audience string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if _, err := c.Client().CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	tr, err := c.Client().CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

func agentToken(t *testing.T, node, audience string) string {
	t.Helper()
	token, err := c.AgentToken(context.Background(), node, audience, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// deletedPodToken is an agent token bound to a Pod on node that has been
// deleted since: the API server no longer accepts it.
func deletedPodToken(t *testing.T, node string) string {
	t.Helper()
	ctx := context.Background()
	pods := c.Client().CoreV1().Pods(cluster.DoormanNamespace)
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: cluster.DoormanNamespace, GenerateName: "doomed-"},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: cluster.AgentServiceAccount, AutomountServiceAccountToken: ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Containers:                    []corev1.Container{{Name: "x", Image: "doorman.local/nodeagent:e2e"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.Client().CoreV1().ServiceAccounts(cluster.DoormanNamespace).CreateToken(ctx, cluster.AgentServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{cluster.TokenAudience}, ExpirationSeconds: ptr.To(int64(600)),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return tr.Status.Token
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not gone: %v", pod.Name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// deletedServiceAccountToken is a token of a ServiceAccount deleted since.
func deletedServiceAccountToken(t *testing.T) string {
	t.Helper()
	token := serviceAccountToken(t, cluster.DoormanNamespace, "doomed", cluster.TokenAudience)
	if err := c.Client().CoreV1().ServiceAccounts(cluster.DoormanNamespace).Delete(context.Background(), "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	return token
}

func nodeEntry(r *doormanv1.SyncResponse) *doormanv1.Node {
	for _, e := range r.GetUpserts() {
		if e.GetKey() == doormanv1.NodeKey {
			return e.GetNode()
		}
	}
	return nil
}

// The cluster's own agents connect over TLS with their Pod-bound tokens
// and acknowledge their views.
func TestAgentsConnected(t *testing.T) {
	inspector := grantInspect(t, "e2e-inspector", map[string]string{"services": "", "endpointslices": "discovery.k8s.io"})
	waitAgentsAcked(t, inspector, 60*time.Second)
}

func TestSyncRefusals(t *testing.T) {
	nodes := c.Nodes()
	if len(nodes) < 2 {
		t.Fatalf("%d nodes, want 2", len(nodes))
	}
	n1, n2 := nodes[0], nodes[1]
	// The valid stream below opens a session as n1: stop n1's agent so the
	// two do not take the node's session from each other.
	c.StopAgent(n1.Name)
	t.Cleanup(func() {
		if err := c.StartAgent(n1.Name); err != nil {
			t.Errorf("restart %s's agent: %v", n1.Name, err)
		}
	})
	secure := dial(t, true)
	tests := []struct {
		name     string
		cc       *grpc.ClientConn
		token    string
		node     string
		wantCode codes.Code
	}{
		{name: "plaintext", cc: dial(t, false), token: agentToken(t, n1.Name, cluster.TokenAudience), node: n1.Name, wantCode: codes.Unavailable},
		{name: "no token", cc: secure, node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "garbage token", cc: secure, token: "not-a-token", node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "token of a deleted pod", cc: secure, token: deletedPodToken(t, n1.Name), node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "token of a deleted service account", cc: secure, token: deletedServiceAccountToken(t), node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "token for the api server's audience", cc: secure, token: agentToken(t, n1.Name, "https://kubernetes.default.svc.cluster.local"), node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "token for another audience", cc: secure, token: agentToken(t, n1.Name, "vault"), node: n1.Name, wantCode: codes.Unauthenticated},
		{name: "token bound to another node", cc: secure, token: agentToken(t, n2.Name, cluster.TokenAudience), node: n1.Name, wantCode: codes.PermissionDenied},
		{name: "token of another service account", cc: secure, token: serviceAccountToken(t, "default", "web", cluster.TokenAudience), node: n1.Name, wantCode: codes.PermissionDenied},
		{name: "agent token not bound to a pod", cc: secure, token: serviceAccountToken(t, cluster.DoormanNamespace, cluster.AgentServiceAccount, cluster.TokenAudience), node: n1.Name, wantCode: codes.PermissionDenied},
		{name: "own node", cc: secure, token: agentToken(t, n1.Name, cluster.TokenAudience), node: n1.Name, wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := hello(context.Background(), tt.cc, tt.token, tt.node)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if err != nil {
				if r != nil {
					t.Fatalf("refused, yet received %v", r)
				}
				t.Logf("refused: %v", err)
				return
			}
			// The view is the node's own: its Node entry, its addresses.
			n := nodeEntry(r)
			if !r.GetFull() || n.GetName() != tt.node {
				t.Fatalf("first update full=%v node entry %v, want the full view of %s", r.GetFull(), n, tt.node)
			}
			if !slices.Contains(n.GetNodeportAddresses(), n1.IP) || slices.Contains(n.GetNodeportAddresses(), n2.IP) {
				t.Errorf("nodeport addresses %v: want %s's (%s) and not %s's (%s)", n.GetNodeportAddresses(), n1.Name, n1.IP, n2.Name, n2.IP)
			}
		})
	}
}

// grantInspect makes a ServiceAccount whose user may list what resources
// says, and waits until the API server's authorizer agrees.
func grantInspect(t *testing.T, name string, resources map[string]string) string {
	t.Helper()
	ctx := context.Background()
	token := serviceAccountToken(t, "default", name, cluster.TokenAudience)
	if len(resources) == 0 {
		return token
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name}}
	for res, group := range resources {
		role.Rules = append(role.Rules, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{res}, Verbs: []string{"list"}})
	}
	if _, err := c.Client().RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: name}},
	}
	if _, err := c.Client().RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for res, group := range resources {
		for {
			sar, err := c.Client().AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: "system:serviceaccount:default:" + name, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Group: group, Resource: res},
			}}, metav1.CreateOptions{})
			if err == nil && sar.Status.Allowed {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rbac for %s not in force: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return token
}

func TestInspect(t *testing.T) {
	inspector := grantInspect(t, "e2e-inspector", map[string]string{"services": "", "endpointslices": "discovery.k8s.io"})
	servicesOnly := grantInspect(t, "e2e-services-only", map[string]string{"services": ""})
	nobody := grantInspect(t, "e2e-nobody", nil)
	secure := dial(t, true)
	tests := []struct {
		name     string
		cc       *grpc.ClientConn
		token    string
		wantCode codes.Code
	}{
		{name: "plaintext", cc: dial(t, false), token: inspector, wantCode: codes.Unavailable},
		{name: "no token", cc: secure, wantCode: codes.Unauthenticated},
		{name: "token for another audience", cc: secure, token: serviceAccountToken(t, "default", "e2e-inspector", "vault"), wantCode: codes.Unauthenticated},
		{name: "user without rbac", cc: secure, token: nobody, wantCode: codes.PermissionDenied},
		{name: "user who may list services only", cc: secure, token: servicesOnly, wantCode: codes.PermissionDenied},
		{name: "an agent", cc: secure, token: agentToken(t, c.Nodes()[0].Name, cluster.TokenAudience), wantCode: codes.PermissionDenied},
		{name: "user who may list services and endpointslices", cc: secure, token: inspector, wantCode: codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ic := doormanv1.NewInspectServiceClient(tt.cc)
			list, err := ic.ListNodes(withToken(ctx, tt.token), &doormanv1.ListNodesRequest{})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("ListNodes: code %v (%v), want %v", got, err, tt.wantCode)
			}
			view, verr := ic.GetNodeView(withToken(ctx, tt.token), &doormanv1.GetNodeViewRequest{NodeName: c.Nodes()[0].Name})
			if got := status.Code(verr); got != tt.wantCode {
				t.Fatalf("GetNodeView: code %v (%v), want %v", got, verr, tt.wantCode)
			}
			if err != nil {
				if list != nil || view != nil {
					t.Fatalf("refused, yet received %v %v", list, view)
				}
				return
			}
			if len(list.GetNodes()) != len(c.Nodes()) || len(view.GetEntries()) == 0 {
				t.Errorf("ListNodes %d nodes, GetNodeView %d entries", len(list.GetNodes()), len(view.GetEntries()))
			}
		})
	}
}
