//go:build e2e

package kind

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
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

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run never passes without running: this package tests a deployed
// cluster, so a missing one is a failure, not a skip.
func run(m *testing.M) int {
	kc, kubectl := os.Getenv("KUBECONFIG"), os.Getenv("KUBECTL")
	if kc == "" || kubectl == "" {
		fmt.Fprintln(os.Stderr, "e2e/kind: needs KUBECONFIG (a kind cluster with doorman deployed) and KUBECTL; run `make e2e-kind`")
		return 1
	}
	kubectlBin = kubectl
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := hclog.New(&hclog.LoggerOptions{Name: "e2e-kind", Level: hclog.Info})
	p, err := provider.OpenKind(ctx, kc, provider.KindOptions{Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kind: open cluster:", err)
		return 1
	}
	prov, cs = p, p.Client()
	code := m.Run()
	if err := p.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kind: close:", err)
	}
	return code
}
