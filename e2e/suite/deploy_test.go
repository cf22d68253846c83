//go:build e2e

package suite

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/e2e/cluster"
	"github.com/doorman-proxy/doorman/e2e/provider"
)

// deploy/ is accepted by a real API server: every object validates,
// passes admission and RBAC (server-side dry run).
func TestDeploy_ServerSideDryRun(t *testing.T) {
	track(t)
	root, err := cluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	kubectl := filepath.Join(provider.DefaultK8sBinDir(), "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		if kubectl, err = exec.LookPath("kubectl"); err != nil {
			t.Fatalf("no kubectl in %s nor on PATH: run e2e/hack/build-k8s.sh kubectl", provider.DefaultK8sBinDir())
		}
	}
	// A server-side dry run does not create the Namespace, so the objects
	// inside it would fail with NotFound: create it for real first.
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doorman-system"}}
	if _, err := prov.Client().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err == nil {
		t.Cleanup(func() {
			_ = prov.Client().CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		})
	} else if !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace doorman-system: %v", err)
	}
	for _, dir := range []string{"deploy/base", "deploy/overlays/kind"} {
		t.Run(dir, func(t *testing.T) {
			cmd := exec.Command(kubectl, "--kubeconfig", prov.Kubeconfig(), "apply", "-k", filepath.Join(root, dir), "--dry-run=server")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply -k %s --dry-run=server: %v\n%s", dir, err, out)
			}
			for _, want := range []string{
				"namespace/doorman-system", "serviceaccount/doorman-controlplane", "serviceaccount/doorman-nodeagent",
				"clusterrole.rbac.authorization.k8s.io/doorman-controlplane", "role.rbac.authorization.k8s.io/doorman-nodeagent",
				"service/doorman-controlplane", "deployment.apps/doorman-controlplane", "daemonset.apps/doorman-nodeagent",
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("dry run did not mention %s:\n%s", want, out)
				}
			}
		})
	}
}
