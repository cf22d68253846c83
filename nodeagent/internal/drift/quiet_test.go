package drift

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/agent"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// end is the end of a commit at gen, touching doorman's table or not.
func end(gen uint32, touched bool) commitEnd {
	return commitEnd{Commit: agent.Commit{Gen: gen, PortID: 9}, touched: touched}
}

// TestQuietRuns: Quiet vouches only for generations inside the run of
// commits seen one after another since the kernel's generation was read
// (at the join, after lost events, after a gap), none touching doorman's
// table.
func TestQuietRuns(t *testing.T) {
	kernel := uint32(4) // what the monitor reads as the kernel's generation
	m := &Monitor{moved: make(chan struct{}), closing: make(chan struct{})}
	m.gen = func() (uint32, error) { return kernel, nil }
	expect := func(from, to uint32, want bool) {
		t.Helper()
		if got := m.Quiet(from, to); got != want {
			t.Errorf("Quiet(%d, %d) = %v, want %v (run %+v)", from, to, got, want, m.seen)
		}
	}
	expect(3, 3, true) // nothing committed
	m.joined()         // at 4
	expect(3, 4, false)
	m.observed(end(4, false)) // queued before the join: older than the run
	m.observed(end(5, false))
	m.observed(end(6, false))
	m.observed(end(7, false))
	expect(4, 7, true)
	expect(5, 6, true)
	expect(3, 7, false) // generation 4 was not seen whole
	expect(4, 8, false) // not seen yet
	expect(7, 4, false) // backwards

	m.observed(end(8, true))
	m.observed(end(9, false))
	expect(8, 9, true)
	expect(7, 9, false) // 8 touched doorman's table
	expect(7, 8, false)

	kernel = 11
	m.observed(end(11, false)) // 10 unseen: rebased at 11, which may be partly seen
	expect(8, 11, false)
	expect(10, 11, false)
	m.observed(end(12, false))
	expect(11, 12, true)

	// Events lost: the commits they belonged to are at or before the
	// generation read then, whatever their own events say later.
	kernel = 14
	m.lost()
	m.observed(end(13, false))
	m.observed(end(14, false))
	expect(12, 14, false)
	expect(13, 14, false)
	m.observed(end(15, false))
	expect(14, 15, true)

	start := time.Now()
	expect(15, 16, false) // never seen (made while out of the group)
	if waited := time.Since(start); waited < quietWait || waited > 10*quietWait {
		t.Errorf("Quiet waited %v for a commit it never saw; want about %v", waited, quietWait)
	}

	go func() {
		time.Sleep(10 * time.Millisecond)
		m.observed(end(16, false))
	}()
	expect(15, 16, true) // waits for the event of a commit the kernel already counts

	// Without the kernel's generation there is no run.
	m.gen = func() (uint32, error) { return 0, errors.New("netlink down") }
	m.lost()
	m.observed(end(17, false))
	expect(16, 17, false)
	m.gen = func() (uint32, error) { return kernel, nil }
	kernel = 17
	m.observed(end(18, false)) // rebased at 17 first
	expect(17, 18, true)

	kernel = ^uint32(0)
	m.joined()
	m.observed(end(0, false)) // the generation wraps
	expect(^uint32(0), 0, true)
}

// TestWitness: with the monitor as its witness, a dataplane keeps its
// Mark across commits to other tables (the backstop resync and the next
// Sync read nothing), and still reads after a commit to doorman's table
// or one made while the monitor was out of the events group.
func TestWitness(t *testing.T) {
	ns := testnet.NewNS(t, "witness")
	m, dp := openWatched(t, ns)
	dp.SetWitness(m)
	k := m.Kernel(dp)
	other, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	commits := 0
	commitOther := func() { // a commit that changes other tables only
		t.Helper()
		commits++
		other.AddTable(&nftables.Table{Name: fmt.Sprintf("firewall-%d", commits), Family: nftables.TableFamilyINet})
		other.AddTable(&nftables.Table{Name: fmt.Sprintf("cni-%d", commits), Family: nftables.TableFamilyIPv4})
		if err := other.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	v := view(t)
	sync := func(v map[string]*doormanv1.Entry, want dataplane.ReadCheck, repair bool) {
		t.Helper()
		stats, err := k.Sync(v)
		if err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if stats.Read != want || (stats.Ops > 0) != repair {
			t.Errorf("Sync: read %q, %d ops; want %q, repair %v", stats.Read, stats.Ops, want, repair)
		}
	}
	sync(v, dataplane.ReadNoRecord, true)

	commitOther()
	if !dp.Unchanged() {
		t.Error("Unchanged false after a commit to other tables only")
	}
	commitOther()
	sync(v, dataplane.ReadSkipped, false)
	commitOther()
	if _, err := k.Sync(bigView(t, 2)); err != nil { // an own commit after someone else's
		t.Fatal(err)
	}
	if dp.Mark().IsZero() {
		t.Error("no Mark after an own commit that followed a commit to another table")
	}
	v = bigView(t, 2)

	other.FlushChain(&nftables.Chain{Name: "services", Table: &nftables.Table{Name: "doorman", Family: nftables.TableFamilyINet}})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	if dp.Unchanged() {
		t.Error("Unchanged true after a commit to doorman's table")
	}
	sync(v, dataplane.ReadGenerationChanged, true)
	commitOther()
	sync(v, dataplane.ReadSkipped, false)

	// A large Sync runs out of the events group: the commit to another
	// table inside it goes unseen, so that Sync reads.
	big := bigView(t, quietSyncEntries)
	sync(big, dataplane.ReadViewChanged, true)
	if stats, err := m.Kernel(foreignFirst{dp, other}).Sync(big); err != nil || stats.Read != dataplane.ReadGenerationChanged {
		t.Errorf("large Sync after a commit while out of the group: read %q, error %v; want %q", stats.Read, err, dataplane.ReadGenerationChanged)
	}
	commitOther()
	sync(big, dataplane.ReadSkipped, false)

	// Any commit while out of the group is unseen, even to another table.
	if !m.leave() {
		t.Fatal("cannot leave the events group")
	}
	commitOther()
	m.rejoin()
	if dp.Unchanged() {
		t.Error("Unchanged true after a commit made while the monitor was out of the events group")
	}
	sync(big, dataplane.ReadGenerationChanged, false)
}
