package provider

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os/exec"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/doorman-proxy/doorman/e2e/etcdput"
)

// PutRaw writes through etcd's client URL on loopback.
func (p *NetNS) PutRaw(ctx context.Context, key string, value []byte) error {
	if _, err := etcdput.New(p.EtcdURL(), nil).Txn(ctx, []etcdput.KV{{Key: key, Value: value}}); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// kindPKI is where kubeadm keeps etcd's CA and the API server's etcd
// client certificate in a kind control-plane node.
const (
	kindEtcdCA         = "/etc/kubernetes/pki/etcd/ca.crt"
	kindEtcdClientCert = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
	kindEtcdClientKey  = "/etc/kubernetes/pki/apiserver-etcd-client.key"
	kindEtcdClientPort = "2379"
)

// PutRaw writes through the etcd of a control-plane node: kubeadm has it
// listen on the node's address on kind's Docker network, which this
// machine reaches, with the API server's client certificate, read from
// the node's container (named after the node, as kind names them).
func (k *Kind) PutRaw(ctx context.Context, key string, value []byte) error {
	node, err := k.controlPlaneNode(ctx)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	cfg, err := kindEtcdTLS(ctx, node.Name, node.IP)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	url := "https://" + net.JoinHostPort(node.IP, kindEtcdClientPort)
	if _, err := etcdput.New(url, cfg).Txn(ctx, []etcdput.KV{{Key: key, Value: value}}); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// controlPlaneNode is the first node labelled as a control plane.
func (k *Kind) controlPlaneNode(ctx context.Context) (Node, error) {
	nl, err := k.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "node-role.kubernetes.io/control-plane"})
	if err != nil {
		return Node{}, fmt.Errorf("list control-plane nodes: %w", err)
	}
	for _, n := range nl.Items {
		for _, node := range k.nodes {
			if node.Name == n.Name {
				return node, nil
			}
		}
	}
	return Node{}, fmt.Errorf("no control-plane node among %d nodes: %w", len(k.nodes), ErrUnsupported)
}

// kindEtcdTLS builds the client configuration for the etcd of node
// (container name) at ip from the certificates in the node's container.
func kindEtcdTLS(ctx context.Context, node, ip string) (*tls.Config, error) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, fmt.Errorf("read etcd's certificates from node %s: no docker on this machine: %w", node, errors.Join(ErrUnsupported, err))
	}
	files := map[string][]byte{}
	for _, path := range []string{kindEtcdCA, kindEtcdClientCert, kindEtcdClientKey} {
		out, err := exec.CommandContext(ctx, "docker", "exec", node, "cat", path).Output()
		if err != nil {
			return nil, fmt.Errorf("docker exec %s cat %s: %w", node, path, exitError(err))
		}
		files[path] = out
	}
	cert, err := tls.X509KeyPair(files[kindEtcdClientCert], files[kindEtcdClientKey])
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate of node %s: %w", node, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(files[kindEtcdCA]) {
		return nil, fmt.Errorf("%s of node %s: no certificate", kindEtcdCA, node)
	}
	// kubeadm's etcd serving certificate names the node's address.
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: ip, MinVersion: tls.VersionTLS12}, nil
}

// exitError adds a failed command's stderr to its error.
func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}
