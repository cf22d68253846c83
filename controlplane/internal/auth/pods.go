package auth

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// objectRef names the Pod or the node a token is bound to.
type objectRef struct {
	Name string    `json:"name"`
	UID  types.UID `json:"uid"`
}

// pods knows the Pods of the agents' namespace and the agents'
// ServiceAccount, from informers, and tells who asked when a Pod that
// admitted a stream goes: a token is revoked by deleting its Pod or its
// ServiceAccount, as the API server's TokenReview has it.
type pods struct {
	informer cache.SharedIndexInformer
	lister   listersv1.PodNamespaceLister
	accounts cache.SharedIndexInformer // the agents' ServiceAccount only
	account  string                    // its namespace/name

	mu      sync.Mutex
	next    uint64
	watches map[types.UID]map[uint64]func() // Pod UID → who to tell when it goes
}

func newPods(client kubernetes.Interface, namespace, account string) *pods {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	inf := f.Core().V1().Pods()
	sa := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", account).String()
		}))
	p := &pods{
		informer: inf.Informer(), lister: inf.Lister().Pods(namespace),
		accounts: sa.Core().V1().ServiceAccounts().Informer(), account: namespace + "/" + account,
		watches: map[types.UID]map[uint64]func(){},
	}
	// Only what admission reads is kept: thousands of agents' Pods cost
	// a few hundred bytes each.
	_ = p.informer.SetTransform(trimPod)
	_, _ = p.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if pod, ok := obj.(*corev1.Pod); ok && pod.DeletionTimestamp != nil {
				p.gone(pod.UID)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				p.gone(pod.UID)
			}
		},
	})
	return p
}

// trimPod keeps a Pod's name, UID, node and deletion mark.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}, nil
}

func (p *pods) run(ctx context.Context) {
	go p.informer.RunWithContext(ctx)
	go p.accounts.RunWithContext(ctx)
}

func (p *pods) synced() bool { return p.informer.HasSynced() && p.accounts.HasSynced() }

// checkAccount returns why a token of the agents' ServiceAccount with
// uid is no longer valid, or nil: it exists with that UID and is not
// being deleted.
func (p *pods) checkAccount(uid types.UID) error {
	obj, ok, err := p.accounts.GetStore().GetByKey(p.account)
	if err != nil || !ok {
		return fmt.Errorf("service account %s not found", p.account)
	}
	sa := obj.(*corev1.ServiceAccount)
	switch {
	case sa.UID != uid:
		return fmt.Errorf("service account %s has uid %s, not %s", p.account, sa.UID, uid)
	case sa.DeletionTimestamp != nil:
		return fmt.Errorf("service account %s is being deleted", p.account)
	}
	return nil
}

// check returns why a token bound to ref on node is no longer valid, or
// nil: the Pod exists with that UID, runs on that node and is not being
// deleted.
func (p *pods) check(ref objectRef, node string) error {
	pod, err := p.lister.Get(ref.Name)
	switch {
	case err != nil:
		return fmt.Errorf("pod %s: %w", ref.Name, err)
	case pod.UID != ref.UID:
		return fmt.Errorf("pod %s has uid %s, not %s", ref.Name, pod.UID, ref.UID)
	case pod.Spec.NodeName != node:
		return fmt.Errorf("pod %s is on node %q, not %q", ref.Name, pod.Spec.NodeName, node)
	case pod.DeletionTimestamp != nil:
		return fmt.Errorf("pod %s is being deleted since %s", ref.Name, pod.DeletionTimestamp.UTC().Format(time.RFC3339))
	}
	return nil
}

// watch calls gone once the Pod with uid is deleted or marked for
// deletion; stop forgets it.
func (p *pods) watch(uid types.UID, gone func()) (stop func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	id := p.next
	if p.watches[uid] == nil {
		p.watches[uid] = map[uint64]func(){}
	}
	p.watches[uid][id] = gone
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.watches[uid], id)
		if len(p.watches[uid]) == 0 {
			delete(p.watches, uid)
		}
	}
}

// gone tells the watchers of a Pod that it went.
func (p *pods) gone(uid types.UID) {
	p.mu.Lock()
	fns := make([]func(), 0, len(p.watches[uid]))
	for _, fn := range p.watches[uid] {
		fns = append(fns, fn)
	}
	p.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
