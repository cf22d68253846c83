package differ

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/internal/version"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestHelloSkew(t *testing.T) {
	for _, tc := range []struct {
		name     string
		served   version.Range
		protocol uint32
		refused  bool
	}{
		{"this build", version.Served, version.Protocol, false},
		{"agent from before Hello carried its protocol", version.Range{Oldest: 1, Newest: 1}, 0, false},
		{"agent from before Hello carried its protocol, 1 no longer served", version.Range{Oldest: 2, Newest: 2}, 0, true},
		{"agent one protocol older, still served", version.Range{Oldest: 1, Newest: 2}, 1, false},
		{"agent newer than the control plane", version.Range{Oldest: 1, Newest: 1}, 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 0, 1)
			f.node("n1")
			f.d.protocols = version.Range{Oldest: 0, Newest: ^uint32(0)}
			a := newAgent()
			served := f.hello(a, "n1")
			f.sync(served, a)

			f.d.protocols = tc.served
			hello := &doormanv1.Hello{NodeName: "n1", Protocol: tc.protocol, AgentVersion: "v0.9.0"}
			_, err := f.d.Hello(hello)
			var skew *version.SkewError
			if got := errors.As(err, &skew); got != tc.refused {
				t.Fatalf("Hello(protocol %d) with %+v served: %v, want refused %v", tc.protocol, tc.served, err, tc.refused)
			}
			st := f.d.NodeStatus("n1")
			if tc.refused {
				if _, err := f.d.Next(served); err != nil {
					t.Errorf("the session a refused Hello would have replaced: %v", err)
				}
				if st.AgentVersion != "" {
					t.Errorf("status shows the refused agent's version %q", st.AgentVersion)
				}
				return
			}
			want := Status{Node: "n1", Connected: true, Desired: st.Desired, Acked: st.Acked, Entries: st.Entries,
				AgentVersion: "v0.9.0", AgentProtocol: version.AgentProtocol(tc.protocol)}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		})
	}
}
