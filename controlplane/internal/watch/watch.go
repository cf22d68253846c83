package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apiwatch "k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/doorman-proxy/doorman/controlplane/internal/watch/compact"
)

// Sink receives the objects the informers see: Services and
// EndpointSlices in their compact forms, which the informers' caches hold
// (the sink may keep them; it must not change them).
type Sink interface {
	SetCompactService(*compact.Service)
	DeleteService(namespace, name string)
	SetCompactSlice(*compact.Slice)
	DeleteSlice(namespace, name string)
	SetNode(*corev1.Node)
	DeleteNode(name string)
	SetServiceCIDR(*networkingv1.ServiceCIDR)
	DeleteServiceCIDR(name string)
}

// Start starts the informers, which run until ctx is done, and returns once
// every object of the initial lists has reached the sink. ServiceCIDRs are
// watched only when the API server serves networking.k8s.io/v1
// servicecidrs (Kubernetes 1.33 and later); otherwise the sink never hears
// of any. fresh, when not nil, hears of every list, event and bookmark the
// informers read (see Freshness).
func Start(ctx context.Context, client kubernetes.Interface, sink Sink, fresh *Freshness, log hclog.Logger) error {
	watchCIDRs, err := servesServiceCIDRs(ctx, client.Discovery(), log)
	if err != nil {
		return err
	}
	if fresh == nil {
		fresh = NewFreshness(nil, log)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trim))
	var regs []cache.InformerSynced
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return err
		}
		regs = append(regs, reg.HasSynced)
		return nil
	}
	core, disc := client.CoreV1(), client.DiscoveryV1()
	errs := []error{
		add(informer(factory, &corev1.Service{}, ResourceServices, listWatch(core.Services("")), fresh), handler(log, "service",
			sink.SetCompactService, func(s *compact.Service) { sink.DeleteService(s.Namespace, s.Name) })),
		add(informer(factory, &discoveryv1.EndpointSlice{}, ResourceEndpointSlices, listWatch(disc.EndpointSlices("")), fresh), handler(log, "endpointslice",
			sink.SetCompactSlice, func(s *compact.Slice) { sink.DeleteSlice(s.Namespace, s.Name) })),
		add(informer(factory, &corev1.Node{}, ResourceNodes, listWatch(core.Nodes()), fresh), handler(log, "node",
			sink.SetNode, func(n *corev1.Node) { sink.DeleteNode(n.Name) })),
	}
	if watchCIDRs {
		errs = append(errs, add(informer(factory, &networkingv1.ServiceCIDR{}, ResourceServiceCIDRs, listWatch(client.NetworkingV1().ServiceCIDRs()), fresh), handler(log, "servicecidr",
			sink.SetServiceCIDR, func(c *networkingv1.ServiceCIDR) { sink.DeleteServiceCIDR(c.Name) })))
	} else {
		log.Info("servicecidrs not served: unallocated service IPs will not be dropped", "resource", serviceCIDRGroupVersion+" servicecidrs")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("add event handlers: %w", err)
	}
	factory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), regs...) {
		return fmt.Errorf("wait for informers to sync: %w", context.Cause(ctx))
	}
	return nil
}

// lister is a typed client's list and watch (e.g. CoreV1().Services("")).
type lister[L runtime.Object] interface {
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (apiwatch.Interface, error)
}

// listWatch is c's list and watch as a cache.ListWatch, as client-go's
// generated informers build it.
func listWatch[L runtime.Object](c lister[L]) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return c.List(ctx, opts)
		},
		WatchFuncWithContext: c.Watch,
	}
}

// informer is the factory's shared informer for obj, reading through lw
// with fresh tracking it. It keeps no index: nothing looks objects up but
// by key, and at 100,000 objects an index costs megabytes.
func informer(factory informers.SharedInformerFactory, obj runtime.Object, resource string, lw *cache.ListWatch, fresh *Freshness) cache.SharedIndexInformer {
	return factory.InformerFor(obj, func(client kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return cache.NewSharedIndexInformer(tracked(cache.ToListWatcherWithWatchListSemantics(lw, client), resource, fresh),
			obj, resync, cache.Indexers{})
	})
}

const serviceCIDRGroupVersion = "networking.k8s.io/v1"

// discoveryRetryMax bounds the wait between two discovery attempts while
// the API server does not answer.
const discoveryRetryMax = 30 * time.Second

// servesServiceCIDRs asks discovery whether the API server serves
// networking.k8s.io/v1 servicecidrs that can be listed and watched. A
// group version it does not serve means no; any other failure is retried
// until ctx is done, as the informers would retry their lists.
func servesServiceCIDRs(ctx context.Context, d discovery.DiscoveryInterface, log hclog.Logger) (bool, error) {
	wait := time.Second
	for {
		list, err := d.ServerResourcesForGroupVersion(serviceCIDRGroupVersion)
		switch {
		case err == nil:
			for _, r := range list.APIResources {
				if r.Name == "servicecidrs" && slices.Contains(r.Verbs, "list") && slices.Contains(r.Verbs, "watch") {
					return true, nil
				}
			}
			return false, nil
		case apierrors.IsNotFound(err):
			return false, nil
		}
		log.Warn("discovery failed, retrying", "group_version", serviceCIDRGroupVersion, "retry_in", wait, "error", err)
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("discover %s: %w", serviceCIDRGroupVersion, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait = min(2*wait, discoveryRetryMax)
	}
}

// handler adapts typed set/delete functions, unwrapping tombstones.
func handler[T any](log hclog.Logger, kind string, set func(T), del func(T)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { typed(log, kind, obj, set) },
		UpdateFunc: func(old, obj any) {
			if sameVersion(old, obj) {
				return // a relist delivering what the handler already has
			}
			typed(log, kind, obj, set)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			typed(log, kind, obj, del)
		},
	}
}

// sameVersion reports whether two states of an object carry the same
// resourceVersion, so that nothing changed between them.
func sameVersion(old, obj any) bool {
	o, ok1 := old.(versioned)
	n, ok2 := obj.(versioned)
	return ok1 && ok2 && o.GetResourceVersion() != "" && o.GetResourceVersion() == n.GetResourceVersion()
}

// versioned is an object with a resourceVersion: every metav1.Object, and
// the compact forms.
type versioned interface {
	GetResourceVersion() string
}

func typed[T any](log hclog.Logger, kind string, obj any, f func(T)) {
	t, ok := obj.(T)
	if !ok {
		log.Error("unexpected object type", "kind", kind, "type", fmt.Sprintf("%T", obj))
		return
	}
	f(t)
}
