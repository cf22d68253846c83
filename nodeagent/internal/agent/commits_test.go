package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCommits(t *testing.T) {
	const own, other = 7001, 9002
	type step struct {
		begin, end   *uint32 // a transaction bracket
		committed    bool
		observe      *Commit
		wantForeign  bool     // Observe's answer
		wantFromEnd  []Commit // End's answer
		wantPortSeen bool
	}
	gen := func(g uint32) *uint32 { return &g }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"foreign commit before any own transaction", []step{
			{observe: &Commit{Gen: 5, PortID: other}, wantForeign: true},
		}},
		{"own commit seen after the transaction ended: own, and its port is learnt", []step{
			{begin: gen(10)},
			{end: gen(11), committed: true, wantPortSeen: false},
			{observe: &Commit{Gen: 11, PortID: own}, wantPortSeen: true},
			// With the port known, a later foreign commit is told apart
			// even inside an own window.
			{begin: gen(11), wantPortSeen: true},
			{observe: &Commit{Gen: 12, PortID: other}, wantForeign: true, wantPortSeen: true},
			{observe: &Commit{Gen: 13, PortID: own}, wantPortSeen: true},
			{end: gen(13), committed: true, wantPortSeen: true},
		}},
		{"own commit seen while the transaction runs: held, then own", []step{
			{begin: gen(20)},
			{observe: &Commit{Gen: 21, PortID: own}},
			{end: gen(21), committed: true, wantPortSeen: true},
		}},
		{"foreign commit held during an own transaction that did not commit", []step{
			{begin: gen(20)},
			{observe: &Commit{Gen: 21, PortID: other}},
			{end: gen(21), committed: false, wantFromEnd: []Commit{{Gen: 21, PortID: other}}},
		}},
		{"two commits in one window: both own, port not learnt", []step{
			{begin: gen(30)},
			{end: gen(32), committed: true},
			{observe: &Commit{Gen: 31, PortID: other}},
			{observe: &Commit{Gen: 32, PortID: own}},
			{observe: &Commit{Gen: 33, PortID: other}, wantForeign: true},
		}},
		{"older than the window: foreign", []step{
			{begin: gen(40)},
			{end: gen(41), committed: true},
			{observe: &Commit{Gen: 40, PortID: other}, wantForeign: true},
		}},
		{"generation wraps", []step{
			{begin: gen(^uint32(0))},
			{end: gen(1), committed: true},
			{observe: &Commit{Gen: 1, PortID: own}, wantPortSeen: true},
			{observe: &Commit{Gen: 2, PortID: other}, wantForeign: true, wantPortSeen: true},
		}},
		{"a kernel-made commit (port 0) does not teach the port", []step{
			{begin: gen(50)},
			{end: gen(51), committed: true},
			{observe: &Commit{Gen: 51, PortID: 0}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Commits
			for i, st := range tc.steps {
				switch {
				case st.begin != nil:
					c.Begin(*st.begin)
				case st.end != nil:
					got := c.End(*st.end, st.committed)
					if diff := cmp.Diff(st.wantFromEnd, got); diff != "" {
						t.Errorf("step %d: End (-want +got):\n%s", i, diff)
					}
				default:
					if got := c.Observe(*st.observe); got != st.wantForeign {
						t.Errorf("step %d: Observe(%+v) = %v, want %v", i, *st.observe, got, st.wantForeign)
					}
				}
				port, known := c.Port()
				if known != st.wantPortSeen || (known && port != own) {
					t.Errorf("step %d: port %d known %v, want known %v (port %d)", i, port, known, st.wantPortSeen, own)
				}
			}
		})
	}
}
