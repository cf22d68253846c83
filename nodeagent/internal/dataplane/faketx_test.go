package dataplane

import (
	"errors"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/go-hclog"

	"github.com/doorman-proxy/doorman/internal/testnet"
	"github.com/doorman-proxy/doorman/nodeagent/internal/render"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func dbEntry(endpoint string) *doormanv1.Entry {
	sp := &doormanv1.ServicePort{Namespace: "default", Name: "db", Protocol: doormanv1.Protocol_PROTOCOL_TCP,
		Family: doormanv1.IPFamily_IP_FAMILY_IPV4, ClusterIp: "10.96.0.20", Port: 5432,
		Endpoints: []*doormanv1.Endpoint{{Ip: endpoint, Port: 5432}}}
	return &doormanv1.Entry{Key: doormanv1.ServicePortKey(sp), Value: &doormanv1.Entry_ServicePort{ServicePort: sp}}
}

func (f *Fake) runLocked(tx Transaction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.run(tx)
}

func (d *Dataplane) runLocked(tx Transaction) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.run(tx)
}

// TestFakeRunFailsAsTheKernel: a transaction the kernel refuses fails on
// the Fake too, and changes nothing.
func TestFakeRunFailsAsTheKernel(t *testing.T) {
	want := rendered(webEntry("10.244.1.1"))
	f := NewFake(Options{})
	if err := f.runLocked(planSync(nil, want).tx); err != nil {
		t.Fatal(err)
	}
	before := f.Dump()
	present := serviceIPElement(10, 80, "service-1")
	absent := serviceIPElement(99, 80, "service-1")
	for _, tc := range []struct {
		name  string
		build func(tx *Transaction)
		want  error // nil: accepted
	}{
		{"delete a missing element", func(tx *Transaction) { tx.deleteElements([]render.Element{absent}) }, syscall.ENOENT},
		{"delete an element twice", func(tx *Transaction) { tx.deleteElements([]render.Element{present, present}) }, syscall.ENOENT},
		{"add a held element with another value", func(tx *Transaction) {
			tx.addElements([]render.Element{serviceIPElement(10, 80, "service-2")})
		}, syscall.EEXIST},
		{"flush a missing chain", func(tx *Transaction) { tx.flushChain("service-9") }, syscall.ENOENT},
		{"delete a chain twice", func(tx *Transaction) { tx.deleteChain("service-1"); tx.deleteChain("service-1") }, syscall.ENOENT},
		{"elements after the table is deleted", func(tx *Transaction) {
			tx.deleteTable()
			tx.addElements([]render.Element{present})
		}, syscall.ENOENT},
		{"a good operation before a bad one", func(tx *Transaction) {
			tx.addElements([]render.Element{absent})
			tx.flushChain("service-9")
		}, syscall.ENOENT},
		{"add a held element with its value", func(tx *Transaction) { tx.addElements([]render.Element{present}) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tx Transaction
			tc.build(&tx)
			err := f.runLocked(tx)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("run: %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, f.Dump()); diff != "" {
				t.Errorf("the table changed (-before +after):\n%s", diff)
			}
		})
	}
}

// TestTransactionOnKernelAndFake: the same transactions run on the kernel
// and on the Fake leave the same table (as Inspect reads it back), and
// one the kernel refuses is refused by both.
func TestTransactionOnKernelAndFake(t *testing.T) {
	ns := testnet.NewNS(t, "tx")
	d, err := Open(hclog.NewNullLogger(), Options{NetNSPath: ns.Path()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	f := NewFake(Options{})

	first := rendered(webEntry("10.244.1.1", "10.244.1.2"))
	second := rendered(webEntry("10.244.1.3"), dbEntry("10.244.2.1"))
	for _, st := range []struct {
		name    string
		plan    func() Transaction
		wantErr bool
	}{
		{name: "program a table", plan: func() Transaction { return planSync(nil, first).tx }},
		{name: "sync to another view", plan: func() Transaction { return planSync(f.kt, second).tx }},
		{name: "refill a chain, delete the unused one", plan: func() Transaction {
			var tx Transaction
			tx.flushChain(render.ChainServices)
			tx.addRules(chainOf(t, second, render.ChainServices))
			tx.deleteChain("service-2")
			return tx
		}},
		{name: "a missing element's delete is refused", wantErr: true, plan: func() Transaction {
			var tx Transaction
			tx.addElements([]render.Element{serviceIPElement(99, 80, "service-1")})
			tx.deleteElements([]render.Element{serviceIPElement(98, 80, "service-1")})
			return tx
		}},
		{name: "replace the table", plan: func() Transaction {
			tx := Transaction{ops: []op{{kind: opDeleteTable}}}
			tx.ops = append(tx.ops, planSync(nil, first).tx.ops...)
			return tx
		}},
	} {
		tx := st.plan()
		kernelErr, fakeErr := d.runLocked(tx), f.runLocked(tx)
		if (kernelErr != nil) != st.wantErr || (fakeErr != nil) != st.wantErr {
			t.Errorf("%s: kernel: %v, fake: %v; want an error: %v", st.name, kernelErr, fakeErr, st.wantErr)
		}
		resp, err := d.Inspect(true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(Format(resp), f.Dump()); diff != "" {
			t.Errorf("%s: table (-kernel +fake):\n%s", st.name, diff)
		}
	}
}
