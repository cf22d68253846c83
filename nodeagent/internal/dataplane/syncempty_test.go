package dataplane_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
)

// BenchmarkSyncEmpty measures a full programming: a Sync of 10,000 and
// 100,000 Services × 2 endpoints into a namespace that holds no table yet,
// as a node's first view. Each Sync runs in a process of its own (see
// BenchmarkStartUp): its heap starts empty, as an agent's does, so the
// encoding's fresh memory costs its page faults. It reports the Sync's
// wall time and steps (render, encode, the kernel's commit), the process's
// CPU during the Sync (all, and the kernel's share, which holds the
// commit), its page faults and the kernel objects written (sets, chains,
// rules, elements).
func BenchmarkSyncEmpty(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			var sum syncEmptyFigures
			for i := 0; i < b.N; i++ {
				node := testnet.NewNS(b, "bench")
				var f syncEmptyFigures
				runChild(b, &f, syncEmptyNetNSEnv+"="+node.Path(), startUpSizeEnv+"="+strconv.Itoa(n))
				if f.Err != "" {
					b.Fatalf("Sync child: %s", f.Err)
				}
				if f.Ops == 0 {
					b.Fatal("Sync into an empty namespace made no change")
				}
				sum.Sync += f.Sync
				sum.Steps.Render += f.Steps.Render
				sum.Steps.Encode += f.Steps.Encode
				sum.Steps.Commit += f.Steps.Commit
				sum.add(f.usage)
				sum.Ops += f.Ops
			}
			per := func(x float64) float64 { return x / float64(b.N) }
			ms := func(d time.Duration) float64 { return per(d.Seconds() * 1000) }
			b.ReportMetric(ms(sum.Sync), "sync-ms/op")
			b.ReportMetric(ms(sum.Steps.Render), "render-ms/op")
			b.ReportMetric(ms(sum.Steps.Encode), "encode-ms/op")
			b.ReportMetric(ms(sum.Steps.Commit), "commit-ms/op")
			sum.report(b)
			b.ReportMetric(per(float64(sum.Ops)), "objects/op")
		})
	}
}

// syncEmptyNetNSEnv names the namespace a BenchmarkSyncEmpty child Syncs
// into (startUpSizeEnv gives the number of Services).
const syncEmptyNetNSEnv = "DOORMAN_SYNCEMPTY_NETNS"

// syncEmptyFigures is what one child's Sync measured of itself.
type syncEmptyFigures struct {
	Sync  time.Duration
	Steps dataplane.SyncSteps
	usage
	Ops int
	Err string
}

func syncEmptyChild(netns, services string) syncEmptyFigures {
	n, err := strconv.Atoi(services)
	if err != nil {
		return syncEmptyFigures{Err: fmt.Sprintf("%s=%q: %v", startUpSizeEnv, services, err)}
	}
	view := bigView(n)
	d, err := dataplane.Open(hclog.NewNullLogger(), dataplane.Options{NetNSPath: netns})
	if err != nil {
		return syncEmptyFigures{Err: fmt.Sprintf("Open: %v", err)}
	}
	defer func() { _ = d.Close() }()
	ru0, start := rusage(), time.Now()
	stats, err := d.Sync(view)
	synced, ru1 := time.Now(), rusage()
	if err != nil {
		return syncEmptyFigures{Err: fmt.Sprintf("Sync: %v", err)}
	}
	return syncEmptyFigures{Sync: synced.Sub(start), Steps: stats.Steps, usage: used(ru0, ru1), Ops: stats.Ops}
}
