// Package kubetest adapts client-go's clientsets (the fake one in tests)
// to kube.Interface. Only tests import it: it pulls in the generated
// clientset, which kube exists to keep out of the agent's binary.
package kubetest

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/watchlist"

	"github.com/doorman-proxy/doorman/nodeagent/internal/kube"
)

// Clientset returns c as a kube.Interface.
func Clientset(c kubernetes.Interface) kube.Interface { return clientset{c} }

type clientset struct{ c kubernetes.Interface }

func (s clientset) EndpointSlices(namespace string) kube.EndpointSlices {
	return s.c.DiscoveryV1().EndpointSlices(namespace)
}

func (s clientset) ConfigMaps(namespace string) kube.ConfigMaps {
	return s.c.CoreV1().ConfigMaps(namespace)
}

// IsWatchListSemanticsUnSupported passes on what the clientset says (the
// fake one cannot stream an informer's initial list), so that informers
// over kube.Interface list instead, as client-go's own informers do.
func (s clientset) IsWatchListSemanticsUnSupported() bool {
	return watchlist.DoesClientNotSupportWatchListSemantics(s.c)
}
