package kubeconfig

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Load returns the API server configuration: in-cluster when path is
// empty, else from the kubeconfig file at path, set to protobuf.
func Load(path string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, err
	}
	UseProtobuf(cfg)
	return cfg, nil
}

// UseProtobuf makes cfg's clients send protobuf and ask for it first. The
// Accept header stays client-go's default for that content type, protobuf
// then anything ("application/vnd.kubernetes.protobuf, */*", as kube-proxy
// sends), so that paths serving one type of their own (the issuer's JWKS,
// application/jwk-set+json) still answer rather than 406.
func UseProtobuf(cfg *rest.Config) {
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = ""
}
