package discovery

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/doorman-proxy/doorman/nodeagent/internal/kube"
)

// Service names the control plane's Service and the port to dial.
type Service struct {
	Namespace string
	Name      string
	// Port is the Service port's name (as in the EndpointSlices' ports).
	Port string
}

func (s Service) String() string { return s.Namespace + "/" + s.Name + ":" + s.Port }

// ParseService reads "NAMESPACE/NAME:PORTNAME".
func ParseService(text string) (Service, error) {
	ns, rest, ok := strings.Cut(text, "/")
	if !ok {
		return Service{}, fmt.Errorf("control-plane service %q: want NAMESPACE/NAME:PORTNAME", text)
	}
	name, port, ok := strings.Cut(rest, ":")
	if !ok {
		return Service{}, fmt.Errorf("control-plane service %q: want NAMESPACE/NAME:PORTNAME", text)
	}
	s := Service{Namespace: ns, Name: name, Port: port}
	for _, f := range []struct {
		what string
		errs []string
	}{
		{"namespace", validation.IsDNS1123Label(ns)},
		{"name", validation.IsDNS1035Label(name)},
		{"port name", validation.IsValidPortName(port)},
	} {
		if len(f.errs) > 0 {
			return Service{}, fmt.Errorf("control-plane service %q: %s: %s", text, f.what, strings.Join(f.errs, "; "))
		}
	}
	return s, nil
}

// Addresses lists "address:port" for every ready endpoint of the slices
// that has the named port, sorted, each once. An endpoint whose ready
// condition is unset counts as ready, as the API defines; FQDN slices are
// skipped (no DNS).
func Addresses(eps []*discoveryv1.EndpointSlice, portName string) []string {
	var out []string
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port := int32(0)
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == portName && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if net.ParseIP(a) == nil {
					continue
				}
				out = append(out, net.JoinHostPort(a, strconv.Itoa(int(port))))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Watcher keeps the address list of one Service current.
type Watcher struct {
	svc      Service
	log      hclog.Logger
	informer cache.SharedIndexInformer

	mu    sync.Mutex
	addrs []string
}

// New prepares a watcher of svc's EndpointSlices; Run starts it.
func New(log hclog.Logger, client kube.Interface, svc Service) (*Watcher, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	w := &Watcher{svc: svc, log: log.With("service", svc.String())}
	eps := client.EndpointSlices(svc.Namespace)
	selector := labels.Set{discoveryv1.LabelServiceName: svc.Name}.String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return eps.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return eps.Watch(ctx, o)
		},
	}
	// As client-go's generated informers do: a client that cannot stream
	// the initial list (a fake) says so, and the reflector lists instead.
	w.informer = cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, client), &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	if _, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.refresh() },
		UpdateFunc: func(any, any) { w.refresh() },
		DeleteFunc: func(any) { w.refresh() },
	}); err != nil {
		return nil, fmt.Errorf("watch endpoint slices of %s: %w", svc, err)
	}
	return w, nil
}

// Run watches until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.informer.RunWithContext(ctx)
	}()
	if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
		w.refresh()
		w.log.Info("watching control-plane endpoints", "addresses", w.Addresses())
	}
	<-ctx.Done()
	<-done
}

func (w *Watcher) refresh() {
	// The API server selects by label; a cache fed otherwise (a fake) may
	// hold other slices.
	var list []*discoveryv1.EndpointSlice
	for _, o := range w.informer.GetStore().List() {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] == w.svc.Name {
			list = append(list, s)
		}
	}
	addrs := Addresses(list, w.svc.Port)
	w.mu.Lock()
	changed := !slices.Equal(addrs, w.addrs)
	w.addrs = addrs
	w.mu.Unlock()
	if changed {
		w.log.Debug("control-plane addresses", "addresses", addrs)
	}
}

// Addresses returns the current list ("address:port", sorted); empty until
// the first slices arrive.
func (w *Watcher) Addresses() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.addrs)
}
