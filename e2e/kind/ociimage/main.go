// Command ociimage writes a container image, assembled from files on disk,
// as a docker-archive tarball that `docker load -i` and containerd's
// `ctr images import` read. The kind cluster's images (Kubernetes
// components, CoreDNS, pause, doorman, agnhost) are built this way from
// binaries compiled here, because nothing can be pulled from a registry.
//
//	ociimage -name registry.k8s.io/kube-apiserver:v1.36.3 -o out.tar \
//	  -file bin/kube-apiserver:/usr/local/bin/kube-apiserver:0755 \
//	  -entrypoint /usr/local/bin/kube-apiserver
//
// Flags that may repeat: -file SRC:DST[:MODE], -dir DST[:MODE],
// -symlink DST:TARGET, -rootfs TAR (each a base layer, plain or gzip,
// in order), -entrypoint ARG, -cmd ARG, -env K=V. The output depends on the
// inputs' contents and the flags only (timestamps are fixed, entries
// sorted, owners root), so the same inputs give the same digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "ociimage: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	opts, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	res, err := writeImage(opts)
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(stderr, "ociimage: wrote %s to %s (image id %s, manifest %s)\n",
		opts.name, opts.out, res.configDigest, res.manifestDigest)
	return nil
}
