package main

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"

	"github.com/doorman-proxy/doorman/e2e/etcdput"
)

// The benchmark loads its Services, IPAddresses and EndpointSlices
// straight into etcd under kube-apiserver's keys, in the API server's own
// storage encoding (protobuf), rather than creating them through the API.
// kube-apiserver v1.36's ClusterIP allocator recounts every IPAddress
// object after each allocation (Allocator.Used and Free list them all for
// its metrics), so creating N Services through the API costs O(N²): about
// 200 per second at first, under 20 per second past 30,000 on this
// machine. Read from etcd, the objects are served, listed and watched
// exactly as if the API server had written them, and every change the
// benchmark measures still goes through the API server.

// etcdMaxTxnOps is etcd's default --max-txn-ops.
const etcdMaxTxnOps = etcdput.MaxTxnOps

// etcdKV is one object to write: its etcd key and the object, with
// TypeMeta set (the storage encoding records it).
type etcdKV struct {
	key string
	obj runtime.Object
}

// etcdLoader writes objects through etcd's JSON gateway, one transaction
// per batch.
type etcdLoader struct {
	etcd *etcdput.Client
}

func newEtcdLoader(url string) *etcdLoader {
	return &etcdLoader{etcd: etcdput.New(url, nil)}
}

func serviceKey(ns, name string) string       { return etcdput.ServiceKey(ns, name) }
func endpointSliceKey(ns, name string) string { return etcdput.EndpointSliceKey(ns, name) }
func ipAddressKey(name string) string         { return etcdput.IPAddressKey(name) }

// put writes kvs in one transaction and returns its revision: the
// resourceVersion every object in it now has.
func (l *etcdLoader) put(ctx context.Context, kvs []etcdKV) (int64, error) {
	raw := make([]etcdput.KV, 0, len(kvs))
	for _, kv := range kvs {
		v, err := etcdput.Encode(kv.obj)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", kv.key, err)
		}
		raw = append(raw, etcdput.KV{Key: kv.key, Value: v})
	}
	return l.etcd.Txn(ctx, raw)
}
