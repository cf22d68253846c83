package auth

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// fakeServerStream is a server stream whose client sent msgs, with the
// given incoming metadata.
type fakeServerStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*doormanv1.SyncRequest
}

func (s *fakeServerStream) Context() context.Context { return s.ctx }

func (s *fakeServerStream) RecvMsg(m any) error {
	if len(s.msgs) == 0 {
		return io.EOF
	}
	m.(*doormanv1.SyncRequest).Message = s.msgs[0].Message
	s.msgs = s.msgs[1:]
	return nil
}

func helloFor(node string) *doormanv1.SyncRequest {
	return &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: node}}}
}

// FuzzNodeBinding drives the agent stream's interceptor with any
// authorization header and any first messages. Whatever they are, the
// handler runs only for a token the API server says is the agents' service
// account bound to a node, and it never receives a Hello that names
// another node than that one.
func FuzzNodeBinding(f *testing.F) {
	f.Add("Bearer agent:n1", "n1", true, false)
	f.Add("Bearer agent:n1", "n2", true, true)
	f.Add("bearer  agent-unbound ", "", true, false)
	f.Add("Basic agent:n1", "n1", false, true)
	f.Add("Bearer other-sa", "n1", true, false)
	f.Add("Bearer "+jwt("n3", 1_900_000_000), "n3", true, true)
	f.Fuzz(func(t *testing.T, authz, helloNode string, firstIsHello, secondIsHello bool) {
		a := newAuth(t, &fakeAPI{}, nil)
		var msgs []*doormanv1.SyncRequest
		first := helloFor(helloNode)
		if !firstIsHello {
			first = &doormanv1.SyncRequest{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: 1}}}
		}
		msgs = append(msgs, first)
		if secondIsHello {
			msgs = append(msgs, helloFor(helloNode+"x"))
		}
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", authz))
		ss := &fakeServerStream{ctx: ctx, msgs: msgs}

		var bound string
		var admitted bool
		scheme, token, _ := strings.Cut(authz, " ")
		token = strings.TrimSpace(token)
		if id, ok := lookup(token); ok && strings.EqualFold(scheme, "bearer") && id.user == agentUser && id.node != "" && slices.Contains(id.audiences, "doorman") {
			admitted, bound = true, id.node
		}

		handled := false
		err := a.stream(nil, ss, &grpc.StreamServerInfo{FullMethod: agentService + "Sync"}, func(_ any, s grpc.ServerStream) error {
			handled = true
			for i := 0; ; i++ {
				var req doormanv1.SyncRequest
				err := s.RecvMsg(&req)
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if i != 0 || status.Code(err) != codes.PermissionDenied {
						t.Errorf("message %d: %v", i, err)
					}
					return err
				}
				if h := req.GetHello(); i == 0 && h != nil && h.GetNodeName() != bound {
					t.Errorf("the handler received a Hello for %q on a stream bound to %q", h.GetNodeName(), bound)
				}
			}
		})
		if handled != admitted {
			t.Fatalf("header %q: handler ran = %v, want %v (err %v)", authz, handled, admitted, err)
		}
		if !admitted && status.Code(err) == codes.OK {
			t.Fatalf("header %q: refused without a status error: %v", authz, err)
		}
		if admitted && firstIsHello && helloNode != bound && status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Hello for %q on a stream bound to %q: %v, want PermissionDenied", helloNode, bound, err)
		}
	})
}
