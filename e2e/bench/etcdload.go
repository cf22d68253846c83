package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
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
const etcdMaxTxnOps = 128

// etcdKV is one object to write: its etcd key and the object, with
// TypeMeta set (the storage encoding records it).
type etcdKV struct {
	key string
	obj runtime.Object
}

// etcdLoader writes objects through etcd's JSON gateway (the v3 API over
// HTTP, on the client URL), one transaction per batch.
type etcdLoader struct {
	url   string
	http  *http.Client
	codec *protobuf.Serializer
}

func newEtcdLoader(url string) *etcdLoader {
	return &etcdLoader{
		url:   url,
		http:  &http.Client{Timeout: 30 * time.Second},
		codec: protobuf.NewSerializer(scheme.Scheme, scheme.Scheme),
	}
}

// Registry keys, as kube-apiserver lays them out under its default
// --etcd-prefix.
func serviceKey(ns, name string) string       { return "/registry/services/specs/" + ns + "/" + name }
func endpointSliceKey(ns, name string) string { return "/registry/endpointslices/" + ns + "/" + name }
func ipAddressKey(name string) string         { return "/registry/ipaddresses/" + name }

type etcdPut struct {
	Key   []byte `json:"key"`   // base64 in JSON, as the gateway wants
	Value []byte `json:"value"` // likewise
}

type etcdRequestOp struct {
	RequestPut etcdPut `json:"request_put"`
}

type etcdTxn struct {
	Success []etcdRequestOp `json:"success"`
}

type etcdTxnResponse struct {
	Header struct {
		Revision string `json:"revision"`
	} `json:"header"`
	Succeeded bool `json:"succeeded"`
}

// put writes kvs in one transaction and returns its revision: the
// resourceVersion every object in it now has.
func (l *etcdLoader) put(ctx context.Context, kvs []etcdKV) (int64, error) {
	if len(kvs) > etcdMaxTxnOps {
		return 0, fmt.Errorf("%d objects in one transaction: etcd takes at most %d", len(kvs), etcdMaxTxnOps)
	}
	txn := etcdTxn{Success: make([]etcdRequestOp, 0, len(kvs))}
	for _, kv := range kvs {
		var buf bytes.Buffer
		if err := l.codec.Encode(kv.obj, &buf); err != nil {
			return 0, fmt.Errorf("encode %s: %w", kv.key, err)
		}
		txn.Success = append(txn.Success, etcdRequestOp{RequestPut: etcdPut{Key: []byte(kv.key), Value: buf.Bytes()}})
	}
	body, err := json.Marshal(txn)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url+"/v3/kv/txn", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("etcd txn of %d objects from %s: %w", len(kvs), kvs[0].key, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("etcd txn of %d objects from %s: %s: %s", len(kvs), kvs[0].key, resp.Status, bytes.TrimSpace(raw))
	}
	var tr etcdTxnResponse
	if err := json.Unmarshal(raw, &tr); err != nil {
		return 0, fmt.Errorf("etcd txn response: %w", err)
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("etcd txn of %d objects from %s did not succeed: %s", len(kvs), kvs[0].key, raw)
	}
	rev, err := strconv.ParseInt(tr.Header.Revision, 10, 64)
	if err != nil || rev <= 0 {
		return 0, fmt.Errorf("etcd txn response revision %q: want a positive integer", tr.Header.Revision)
	}
	return rev, nil
}
