// Package etcdput writes Kubernetes objects straight into etcd under
// kube-apiserver's keys, in the API server's own storage encoding
// (protobuf), through etcd's JSON gateway (the v3 API over HTTP on the
// client URL). Read back from etcd, such objects are served, listed and
// watched exactly as if the API server had written them, without its
// admission or validation: benchmarks load large object sets this way, and
// tests store objects an older API server accepted and today's refuses.
package etcdput

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
)

// MaxTxnOps is etcd's default --max-txn-ops: the most keys one Txn may
// write.
const MaxTxnOps = 128

// Registry keys, as kube-apiserver lays them out under its default
// --etcd-prefix.
func ServiceKey(ns, name string) string       { return "/registry/services/specs/" + ns + "/" + name }
func EndpointSliceKey(ns, name string) string { return "/registry/endpointslices/" + ns + "/" + name }
func IPAddressKey(name string) string         { return "/registry/ipaddresses/" + name }

var codec = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)

// Encode is obj in the API server's storage encoding. obj's TypeMeta must
// be set: the encoding records it.
func Encode(obj runtime.Object) ([]byte, error) {
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		return nil, fmt.Errorf("encode %T: apiVersion and kind are not set", obj)
	}
	var buf bytes.Buffer
	if err := codec.Encode(obj, &buf); err != nil {
		return nil, fmt.Errorf("encode %T: %w", obj, err)
	}
	return buf.Bytes(), nil
}

// KV is one key to write and its value.
type KV struct {
	Key   string
	Value []byte
}

// Client writes to one etcd member.
type Client struct {
	url  string
	http *http.Client
}

// New is a client of the etcd member at url ("http://127.0.0.1:2379");
// tlsConfig, when not nil, is used for an https URL (etcd's client
// certificate and CA).
func New(url string, tlsConfig *tls.Config) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	return &Client{url: url, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

type put struct {
	Key   []byte `json:"key"`   // base64 in JSON, as the gateway wants
	Value []byte `json:"value"` // likewise
}

type requestOp struct {
	RequestPut put `json:"request_put"`
}

type txn struct {
	Success []requestOp `json:"success"`
}

type txnResponse struct {
	Header struct {
		Revision string `json:"revision"`
	} `json:"header"`
	Succeeded bool `json:"succeeded"`
}

// Txn writes kvs in one transaction and returns its revision: the
// resourceVersion every object in it now has.
func (c *Client) Txn(ctx context.Context, kvs []KV) (int64, error) {
	if len(kvs) == 0 {
		return 0, errors.New("etcd txn: nothing to write")
	}
	if len(kvs) > MaxTxnOps {
		return 0, fmt.Errorf("%d keys in one transaction: etcd takes at most %d", len(kvs), MaxTxnOps)
	}
	t := txn{Success: make([]requestOp, 0, len(kvs))}
	for _, kv := range kvs {
		t.Success = append(t.Success, requestOp{RequestPut: put{Key: []byte(kv.Key), Value: kv.Value}})
	}
	raw, err := c.post(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("etcd txn of %d keys from %s: %w", len(kvs), kvs[0].Key, err)
	}
	var tr txnResponse
	if err := json.Unmarshal(raw, &tr); err != nil {
		return 0, fmt.Errorf("etcd txn response: %w", err)
	}
	if !tr.Succeeded {
		return 0, fmt.Errorf("etcd txn of %d keys from %s did not succeed: %s", len(kvs), kvs[0].Key, raw)
	}
	rev, err := strconv.ParseInt(tr.Header.Revision, 10, 64)
	if err != nil || rev <= 0 {
		return 0, fmt.Errorf("etcd txn response revision %q: want a positive integer", tr.Header.Revision)
	}
	return rev, nil
}

// post sends one transaction to the gateway and returns its answer.
func (c *Client) post(ctx context.Context, t txn) ([]byte, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v3/kv/txn", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	return raw, nil
}
