//go:build e2e

package kind

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/kubernetes"

	"github.com/doorman-proxy/doorman/e2e/provider"
)

var (
	// prov is the kind cluster doorman runs on; its echo Pods are the
	// clients and backends of every test here.
	prov *provider.Kind
	cs   kubernetes.Interface
	// kubectlBin is the kubectl built from the pinned sources ($KUBECTL).
	kubectlBin string
)

// TestMain never passes without running: this package tests a deployed
// cluster, so a missing one is a failure, not a skip.
func TestMain(m *testing.M) {
	kc, kubectl := os.Getenv("KUBECONFIG"), os.Getenv("KUBECTL")
	if kc == "" || kubectl == "" {
		fmt.Fprintln(os.Stderr, "e2e/kind: needs KUBECONFIG (a kind cluster with doorman deployed) and KUBECTL; run `make e2e-kind`")
		os.Exit(1)
	}
	kubectlBin = kubectl
	os.Exit(provider.Run(m, provider.Package[*provider.Kind]{
		Name:    "e2e/kind",
		LogInfo: true,
		Start: func(ctx context.Context, env provider.Env) (*provider.Kind, error) {
			return provider.OpenKind(ctx, kc, provider.KindOptions{Logger: env.Log})
		},
		Setup: func(_ context.Context, p *provider.Kind) error {
			prov, cs = p, p.Client()
			return nil
		},
	}))
}
