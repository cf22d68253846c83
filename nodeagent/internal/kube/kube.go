package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// EndpointSlices reads the EndpointSlices of one namespace.
type EndpointSlices interface {
	List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// ConfigMaps reads the ConfigMaps of one namespace.
type ConfigMaps interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error)
}

// Interface is what the agent reads from the API server (*Client).
type Interface interface {
	EndpointSlices(namespace string) EndpointSlices
	ConfigMaps(namespace string) ConfigMaps
}

// Client reads EndpointSlices and ConfigMaps through the API server.
type Client struct {
	core, discovery rest.Interface
	params          runtime.ParameterCodec
}

var _ Interface = (*Client)(nil)

// scheme knows the two API groups the agent reads, and the options
// (ListOptions, GetOptions) it sends as query parameters.
func scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := discoveryv1.AddToScheme(s); err != nil {
		return nil, err
	}
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return s, nil
}

// New returns a client for the API server cfg points at. cfg is copied.
func New(cfg *rest.Config) (*Client, error) {
	s, err := scheme()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client scheme: %w", err)
	}
	codecs := serializer.NewCodecFactory(s).WithoutConversion()
	restFor := func(gv schema.GroupVersion, apiPath string) (rest.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion = &gv
		c.APIPath = apiPath
		c.NegotiatedSerializer = codecs
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for %s: %w", gv, err)
		}
		return rc, nil
	}
	core, err := restFor(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	disc, err := restFor(discoveryv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return &Client{core: core, discovery: disc, params: runtime.NewParameterCodec(s)}, nil
}

// EndpointSlices returns the EndpointSlices of namespace.
func (c *Client) EndpointSlices(namespace string) EndpointSlices {
	return endpointSlices{c: c, namespace: namespace}
}

// ConfigMaps returns the ConfigMaps of namespace.
func (c *Client) ConfigMaps(namespace string) ConfigMaps {
	return configMaps{c: c, namespace: namespace}
}

// The requests below are those of client-go's generated typed clients
// (k8s.io/client-go/gentype), written out: gentype also links client-go's
// fake machinery (k8s.io/client-go/testing and, through it, OpenAPI and
// server-side apply), which the agent never uses.

type endpointSlices struct {
	c         *Client
	namespace string
}

func (e endpointSlices) List(ctx context.Context, opts metav1.ListOptions) (*discoveryv1.EndpointSliceList, error) {
	list := &discoveryv1.EndpointSliceList{}
	err := e.c.discovery.Get().
		Namespace(e.namespace).
		Resource("endpointslices").
		VersionedParams(&opts, e.c.params).
		Timeout(timeout(opts)).
		Do(ctx).
		Into(list)
	return list, err
}

func (e endpointSlices) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return e.c.discovery.Get().
		Namespace(e.namespace).
		Resource("endpointslices").
		VersionedParams(&opts, e.c.params).
		Timeout(timeout(opts)).
		Watch(ctx)
}

func timeout(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}

type configMaps struct {
	c         *Client
	namespace string
}

func (m configMaps) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := m.c.core.Get().
		Namespace(m.namespace).
		Resource("configmaps").
		Name(name).
		VersionedParams(&opts, m.c.params).
		Do(ctx).
		Into(cm)
	return cm, err
}
