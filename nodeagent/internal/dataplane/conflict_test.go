package dataplane_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func inNamespace(ns string) svcOpt { return func(sp *doormanv1.ServicePort) { sp.Namespace = ns } }

// mapElements reads one map's elements from the kernel as nft text.
func mapElements(t *testing.T, d *dataplane.Dataplane, name string) []string {
	t.Helper()
	resp, err := d.Inspect(true)
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	for _, m := range resp.GetMaps() {
		if m.GetName() == name {
			return m.GetElements()
		}
	}
	t.Fatalf("no map %s", name)
	return nil
}

// notProgrammed prints an Apply's or Sync's list of entries left out.
func notProgrammed(m map[string]error) map[string]string {
	out := map[string]string{}
	for k, err := range m {
		out[k] = err.Error()
	}
	return out
}

// expectExact checks a Sync of view finds nothing to change: what the Applies
// left in the kernel is what the whole view renders to.
func expectExact(t *testing.T, d *dataplane.Dataplane, view map[string]*doormanv1.Entry, wantLeftOut map[string]string) {
	t.Helper()
	stats, err := d.Sync(view)
	var partial *dataplane.InvalidEntriesError
	if err != nil && !errors.As(err, &partial) {
		t.Fatalf("Sync: %v", err)
	}
	if stats.Ops != 0 {
		t.Errorf("Sync after the Applies touched %d objects, want 0 (Apply left the kernel as View renders it)", stats.Ops)
	}
	if diff := cmp.Diff(wantLeftOut, notProgrammed(stats.NotProgrammed)); diff != "" {
		t.Errorf("Sync's entries left out (-want +got):\n%s", diff)
	}
}

// TestConflicts, on a kernel: an externalIP naming another Service's
// ClusterIP on its port never takes it (the victim's element stays, its
// Pods answer), the attacker's own ClusterIP still works, and it is
// reported by name. Between two Services with one externalIP, the first
// key owns it; when it is deleted, the other is programmed by the same
// transaction.
func TestConflicts(t *testing.T) {
	top := externalTopology(t)
	d := open(t, top.node)

	victim := service("victim", "10.96.0.10", 80, inNamespace("zzz"), endpoints(0))
	evil := service("evil", "10.96.0.20", 80, inNamespace("aaa"), withExternalIPs("10.96.0.10"), endpoints(1))
	view := viewOf(nodeWithPods(), victim)
	if _, err := d.Sync(view); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	victimElement := "10.96.0.10 . tcp . 80 : goto service-1"
	if !slices.Contains(mapElements(t, d, render.MapServiceIPs), victimElement) {
		t.Fatalf("service-ips lacks the victim's %q", victimElement)
	}
	evilReason := `entry "aaa/evil:80/tcp/ipv4": externalIP 10.96.0.10:80/tcp is the ClusterIP of "zzz/victim:80/tcp/ipv4"`

	t.Run("an externalIP on another Service's ClusterIP", func(t *testing.T) {
		stats, err := d.Apply([]dataplane.Change{{Key: evil.GetKey(), New: evil}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if diff := cmp.Diff(map[string]string{evil.GetKey(): evilReason}, notProgrammed(stats.NotProgrammed)); diff != "" {
			t.Errorf("entries left out (-want +got):\n%s", diff)
		}
		view[evil.GetKey()] = evil
		if !slices.Contains(mapElements(t, d, render.MapServiceIPs), victimElement) {
			t.Errorf("service-ips lost the victim's %q", victimElement)
		}
		expect(t, top.client, "10.96.0.10:80", 10, []string{"server1"}, nil)
		expect(t, top.client, "10.96.0.20:80", 4, []string{"server2"}, nil)
		expectExact(t, d, view, map[string]string{evil.GetKey(): evilReason})
	})

	first := service("first", "10.96.0.31", 80, inNamespace("aaa"), withExternalIPs(externalIP), endpoints(0))
	second := service("second", "10.96.0.32", 80, inNamespace("zzz"), withExternalIPs(externalIP), endpoints(2))
	secondReason := `entry "zzz/second:80/tcp/ipv4": externalIP 192.0.2.10:80/tcp is the externalIP of "aaa/first:80/tcp/ipv4"`
	t.Run("two externalIPs: the first key owns it", func(t *testing.T) {
		if _, err := d.Apply([]dataplane.Change{{Key: second.GetKey(), New: second}}); err != nil {
			t.Fatalf("Apply second: %v", err)
		}
		expect(t, top.client, externalIP+":80", 4, []string{"server3"}, nil)
		stats, err := d.Apply([]dataplane.Change{{Key: first.GetKey(), New: first}})
		if err != nil {
			t.Fatalf("Apply first: %v", err)
		}
		want := map[string]string{evil.GetKey(): evilReason, second.GetKey(): secondReason}
		if diff := cmp.Diff(want, notProgrammed(stats.NotProgrammed)); diff != "" {
			t.Errorf("entries left out (-want +got):\n%s", diff)
		}
		view[first.GetKey()], view[second.GetKey()] = first, second
		expect(t, top.client, externalIP+":80", 6, []string{"server1"}, nil)
		expect(t, top.client, "10.96.0.32:80", 4, []string{"server3"}, nil)
		expectExact(t, d, view, want)
	})

	t.Run("the owner is deleted: the other is programmed in the same transaction", func(t *testing.T) {
		stats, err := d.Apply([]dataplane.Change{{Key: first.GetKey(), Old: first}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if diff := cmp.Diff(map[string]string{evil.GetKey(): evilReason}, notProgrammed(stats.NotProgrammed)); diff != "" {
			t.Errorf("entries left out (-want +got):\n%s", diff)
		}
		delete(view, first.GetKey())
		// No other transaction ran: the one Apply brought second in.
		expect(t, top.client, externalIP+":80", 6, []string{"server3"}, nil)
		expectExact(t, d, view, map[string]string{evil.GetKey(): evilReason})
	})

	t.Run("the victim goes: the externalIP may take the address", func(t *testing.T) {
		stats, err := d.Apply([]dataplane.Change{{Key: victim.GetKey(), Old: victim}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if len(stats.NotProgrammed) != 0 {
			t.Errorf("entries left out: %v, want none", stats.NotProgrammed)
		}
		delete(view, victim.GetKey())
		expect(t, top.client, "10.96.0.10:80", 4, []string{"server2"}, nil)
		expectExact(t, d, view, map[string]string{})
	})

	t.Run("the victim comes back and takes its ClusterIP back", func(t *testing.T) {
		stats, err := d.Apply([]dataplane.Change{{Key: victim.GetKey(), New: victim}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if diff := cmp.Diff(map[string]string{evil.GetKey(): evilReason}, notProgrammed(stats.NotProgrammed)); diff != "" {
			t.Errorf("entries left out (-want +got):\n%s", diff)
		}
		view[victim.GetKey()] = victim
		expect(t, top.client, "10.96.0.10:80", 6, []string{"server1"}, nil)
		expectExact(t, d, view, map[string]string{evil.GetKey(): evilReason})
	})

	t.Run("identical elements are not shared", func(t *testing.T) {
		// Two Services of one namespace with one selector and one
		// externalIP render to the same elements: deleting the owner
		// must not delete what the other needs.
		a := service("same-a", "10.96.0.41", 80, withExternalIPs("192.0.2.41"), endpoints(1))
		b := service("same-b", "10.96.0.42", 80, withExternalIPs("192.0.2.41"), endpoints(1))
		for _, e := range []*doormanv1.Entry{a, b} {
			if _, err := d.Apply([]dataplane.Change{{Key: e.GetKey(), New: e}}); err != nil {
				t.Fatalf("Apply %s: %v", e.GetKey(), err)
			}
			view[e.GetKey()] = e
		}
		stats, err := d.Apply([]dataplane.Change{{Key: a.GetKey(), Old: a}})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		delete(view, a.GetKey())
		if _, left := stats.NotProgrammed[b.GetKey()]; left {
			t.Errorf("%s left out after the owner went: %v", b.GetKey(), stats.NotProgrammed[b.GetKey()])
		}
		expect(t, top.client, "192.0.2.41:80", 4, []string{"server2"}, nil)
		expectExact(t, d, view, map[string]string{evil.GetKey(): evilReason})
	})
}

// TestConflictReasonNamesBoth: the reason Sync gives names both entries
// and the frontend.
func TestConflictReasonNamesBoth(t *testing.T) {
	node := newTopology(t, 0).node
	d := open(t, node)
	victim := service("kube-dns", "10.96.0.10", 53, inNamespace("kube-system"), endpoints(0))
	victim.GetServicePort().Protocol = doormanv1.Protocol_PROTOCOL_UDP
	victim.Key = doormanv1.ServicePortKey(victim.GetServicePort())
	evil := service("evil", "10.96.0.99", 53, inNamespace("aaa"), withExternalIPs("10.96.0.10"), endpoints(1))
	evil.GetServicePort().Protocol = doormanv1.Protocol_PROTOCOL_UDP
	evil.Key = doormanv1.ServicePortKey(evil.GetServicePort())
	_, err := d.Sync(viewOf(nodeWithPods(), victim, evil))
	var partial *dataplane.InvalidEntriesError
	if !errors.As(err, &partial) {
		t.Fatalf("Sync error = %v, want an *InvalidEntriesError", err)
	}
	want := `entry "aaa/evil:53/udp/ipv4": externalIP 10.96.0.10:53/udp is the ClusterIP of "kube-system/kube-dns:53/udp/ipv4"`
	if got := partial.Entries[evil.GetKey()]; got == nil || got.Error() != want {
		t.Errorf("reason = %v, want %s", got, want)
	}
	if len(partial.Entries) != 1 {
		t.Errorf("entries left out: %v, want only %s", partial.Entries, evil.GetKey())
	}
	if !slices.ContainsFunc(mapElements(t, d, render.MapServiceIPs), func(s string) bool { return strings.HasPrefix(s, "10.96.0.10 . udp . 53 : goto service-") }) {
		t.Errorf("service-ips lacks kube-dns's ClusterIP")
	}
}
