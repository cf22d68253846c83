package dataplane_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/dataplane"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func webPort(clusterIP string, nodePort uint32, endpoints ...*doormanv1.Endpoint) *doormanv1.Entry {
	return spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "web", Protocol: tcp, Family: ipv4,
		ClusterIp: clusterIP, Port: 80, NodePort: nodePort, Endpoints: endpoints})
}

func dbPort(endpoints ...*doormanv1.Endpoint) *doormanv1.Entry {
	return spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "db", Protocol: tcp, Family: ipv4,
		ClusterIp: "10.96.0.20", Port: 5432, Endpoints: endpoints})
}

// kernelStep is one call made to both the Fake and the kernel.
type kernelStep struct {
	name string
	call func(k kernelLike) (int, error)
}

// fakeSteps: a Sync, Applies that add, change (another endpoint count),
// take a frontend another entry owns, and remove entries, a Sync to a
// smaller view, and the retirement of the per-K chains left unused.
func fakeSteps() []kernelStep {
	web1 := webPort("10.96.0.10", 30080, ep("10.244.1.1", 8080))
	web2 := webPort("10.96.0.10", 30080, ep("10.244.1.1", 8080), ep("10.244.1.2", 8080))
	db := dbPort(ep("10.244.2.1", 5432))
	thief := spEntry(&doormanv1.ServicePort{Namespace: "default", Name: "thief", Protocol: tcp, Family: ipv4,
		ClusterIp: "10.96.0.30", Port: 80, ExternalIps: []string{"10.96.0.10"}, Endpoints: []*doormanv1.Endpoint{ep("10.244.3.1", 80)}})
	node := nodeEntry("192.168.1.10")
	return []kernelStep{
		{"sync", func(k kernelLike) (int, error) {
			s, err := k.Sync(viewOf(node, web1))
			return s.Ops, err
		}},
		{"apply: add db, web to two endpoints", func(k kernelLike) (int, error) {
			s, err := k.Apply([]dataplane.Change{{Key: db.Key, New: db}, {Key: web1.Key, Old: web1, New: web2}})
			return s.Ops, err
		}},
		{"apply: an entry claims web's ClusterIP", func(k kernelLike) (int, error) {
			s, err := k.Apply([]dataplane.Change{{Key: thief.Key, New: thief}})
			return s.Ops + len(s.NotProgrammed), err
		}},
		{"apply: web goes, its frontend passes on", func(k kernelLike) (int, error) {
			s, err := k.Apply([]dataplane.Change{{Key: web2.Key, Old: web2}})
			return s.Ops + len(s.NotProgrammed), err
		}},
		{"sync: a smaller view", func(k kernelLike) (int, error) {
			s, err := k.Sync(viewOf(node, db))
			return s.Ops, err
		}},
		{"retire unused chains", func(k kernelLike) (int, error) { return k.RetireUnused() }},
	}
}

type kernelLike = interface {
	Sync(map[string]*doormanv1.Entry) (dataplane.Stats, error)
	Apply([]dataplane.Change) (dataplane.Stats, error)
	RetireUnused() (int, error)
}

// TestFakeMatchesKernel: the same calls leave the Fake and the kernel
// with the same table, as Inspect reads it back, and cost the same ops.
func TestFakeMatchesKernel(t *testing.T) {
	ns := testnet.NewNS(t, "fake")
	dp := open(t, ns)
	fake := dataplane.NewFake(dataplane.Options{})
	for _, st := range fakeSteps() {
		wantOps, wantErr := st.call(dp)
		gotOps, gotErr := st.call(fake)
		if (wantErr == nil) != (gotErr == nil) || wantOps != gotOps {
			t.Errorf("%s: fake %d ops, err %v; kernel %d ops, err %v", st.name, gotOps, gotErr, wantOps, wantErr)
		}
		resp, err := dp.Inspect(true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(dataplane.Format(resp), fake.Dump()); diff != "" {
			t.Errorf("%s: fake table (-kernel +fake):\n%s", st.name, diff)
		}
	}
}

// TestFakeDump: the Fake holds what the calls rendered: web's elements
// while it is there, the chains each endpoint count needs until retired.
func TestFakeDump(t *testing.T) {
	fake := dataplane.NewFake(dataplane.Options{})
	if got, want := fake.Dump(), "table inet doorman\n"; got != want {
		t.Errorf("dump before a Sync: %q, want %q", got, want)
	}
	var dumps []string
	for _, st := range fakeSteps() {
		if _, err := st.call(fake); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		dumps = append(dumps, fake.Dump())
	}
	for i, want := range []struct{ has, lacks []string }{
		{has: []string{"\t10.96.0.10 . tcp . 80 : goto service-1\n", "chain service-1\n"}, lacks: []string{"chain service-2\n"}},
		{has: []string{"\t10.96.0.10 . tcp . 80 : goto service-2\n", "\t10.96.0.20 . tcp . 5432 : goto service-1\n", "chain service-2\n"}},
		{has: []string{"\t10.96.0.10 . tcp . 80 : goto service-2\n", "\t10.96.0.30 . tcp . 80 : goto service-1\n"}},
		{has: []string{"10.244.3.1"}, lacks: []string{"10.244.1.2"}},
		{has: []string{"chain service-2\n", "\t10.96.0.20 . tcp . 5432 : goto service-1\n"}, lacks: []string{"10.96.0.10 ", "10.244.3.1"}},
		{has: []string{"chain service-1\n"}, lacks: []string{"chain service-2\n"}},
	} {
		for _, s := range want.has {
			if !strings.Contains(dumps[i], s) {
				t.Errorf("step %d: dump lacks %q:\n%s", i, s, dumps[i])
			}
		}
		for _, s := range want.lacks {
			if strings.Contains(dumps[i], s) {
				t.Errorf("step %d: dump holds %q:\n%s", i, s, dumps[i])
			}
		}
	}
}

// TestFakeFailsAsTheKernel: an Apply from a value the kernel does not
// hold, of a refused entry, or told to fail changes nothing; a Sync told
// to fail does not commit; a foreign flush is repaired by the next Sync.
func TestFakeFailsAsTheKernel(t *testing.T) {
	web1 := webPort("10.96.0.10", 0, ep("10.244.1.1", 8080))
	web2 := webPort("10.96.0.10", 0, ep("10.244.1.9", 8080))
	db := dbPort(ep("10.244.2.1", 5432))
	db.Digest = 7
	fake := dataplane.NewFake(dataplane.Options{})
	if _, err := fake.Apply([]dataplane.Change{{Key: web1.Key, New: web1}}); !errors.Is(err, dataplane.ErrNotSynced) {
		t.Errorf("Apply before Sync: %v, want ErrNotSynced", err)
	}
	if _, err := fake.Sync(viewOf(web1)); err != nil {
		t.Fatal(err)
	}
	before := fake.Dump()
	fake.Refuse(7)
	fake.FailSyncs(errors.New("EPERM"), 1)
	for name, call := range map[string]func() error{
		"another old value": func() error {
			_, err := fake.Apply([]dataplane.Change{{Key: web2.Key, Old: web2, New: web1}})
			return err
		},
		"refused entry": func() error { _, err := fake.Apply([]dataplane.Change{{Key: db.Key, New: db}}); return err },
		"told to fail": func() error {
			fake.FailApply(syscall.EBUSY)
			_, err := fake.Apply([]dataplane.Change{{Key: web1.Key, Old: web1, New: web2}})
			return err
		},
		"sync told to fail": func() error { _, err := fake.Sync(viewOf(web2)); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if after := fake.Dump(); after != before {
			t.Errorf("%s: the table changed (-before +after):\n%s", name, cmp.Diff(before, after))
		}
	}
	if _, err := fake.Sync(viewOf(web1)); err != nil {
		t.Fatal(err)
	}
	fake.FlushChain("services")
	if fake.Unchanged() || fake.Dump() == before {
		t.Fatal("a foreign flush went unnoticed")
	}
	if s, err := fake.Sync(viewOf(web1)); err != nil || s.Ops == 0 || fake.Dump() != before || !fake.Unchanged() {
		t.Errorf("repair: %d ops, err %v, unchanged %v; dump (-want +got):\n%s", s.Ops, err, fake.Unchanged(), cmp.Diff(before, fake.Dump()))
	}
}
