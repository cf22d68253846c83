// Package signetwork is the test binary make conformance runs: Kubernetes'
// own e2e framework and its sig-network specs, at the version go.mod pins,
// without the other SIGs' spec packages. Those only add specs the focus
// never selects, and compiling them more than doubled the binary's build
// on a fresh machine. The suite's set-up (k8s.io/kubernetes/test/e2e's
// RunE2ETests), flags and embedded test files are upstream's; which specs
// both binaries select is compared in e2e/conformance/README.md.
//
// Upstream's test/e2e/e2e_test.go is the model: it registers every SIG's
// specs the same way, by importing their packages.
package signetwork

import (
	"flag"
	"fmt"
	"os"
	"testing"

	// The ginkgo CLI looks for this import to recognise a Ginkgo suite.
	_ "github.com/onsi/ginkgo/v2"

	"k8s.io/component-base/version"
	conformancetestdata "k8s.io/kubernetes/test/conformance/testdata"
	"k8s.io/kubernetes/test/e2e"
	"k8s.io/kubernetes/test/e2e/framework"
	"k8s.io/kubernetes/test/e2e/framework/config"
	"k8s.io/kubernetes/test/e2e/framework/testfiles"
	e2etestingmanifests "k8s.io/kubernetes/test/e2e/testing-manifests"
	testfixtures "k8s.io/kubernetes/test/fixtures"

	// Feature and label names, declared before any spec uses them.
	_ "k8s.io/kubernetes/test/e2e/feature"

	// The specs: sig-network's. k8s.io/kubernetes/test/e2e itself brings
	// test/e2e/common, whose network package holds the Networking
	// conformance specs (and whose node and storage packages come along).
	_ "k8s.io/kubernetes/test/e2e/network"

	// The framework's extensions upstream's suite installs.
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/metrics/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/utils/format"
)

func TestMain(m *testing.M) {
	showVersion := flag.CommandLine.Bool("version", false, "Displays version information.")
	config.CopyFlags(config.Flags, flag.CommandLine)
	framework.RegisterCommonFlags(flag.CommandLine)
	framework.RegisterClusterFlags(flag.CommandLine)
	flag.Parse()

	if *showVersion {
		fmt.Println(version.Get())
		os.Exit(0)
	}
	if flag.CommandLine.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "unknown additional command line arguments: %s\n", flag.CommandLine.Args())
		os.Exit(1)
	}

	// Manifests and fixtures some specs read, embedded as upstream embeds them.
	testfiles.AddFileSource(e2etestingmanifests.GetE2ETestingManifestsFS())
	testfiles.AddFileSource(testfixtures.GetTestFixturesFS())
	testfiles.AddFileSource(conformancetestdata.GetConformanceTestdataFS())

	framework.AfterReadingAllFlags(&framework.TestContext)
	if framework.TestContext.RepoRoot != "" {
		testfiles.AddFileSource(testfiles.RootFileSource{Root: framework.TestContext.RepoRoot})
	}
	os.Exit(m.Run())
}

// TestE2E runs the Ginkgo suite with upstream's set-up and reporting.
func TestE2E(t *testing.T) {
	e2e.RunE2ETests(t)
}
