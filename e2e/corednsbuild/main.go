// Command coredns is the cluster DNS server of the kind cluster, built from
// github.com/coredns/coredns at the version pinned in this module's go.mod
// with its default plugin set.
package main

import (
	_ "github.com/coredns/coredns/core/plugin" // the default plugins, as upstream's binary has them
	"github.com/coredns/coredns/coremain"
)

func main() { coremain.Run() }
