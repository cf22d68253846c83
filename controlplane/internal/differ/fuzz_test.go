package differ

import (
	"testing"

	"google.golang.org/protobuf/proto"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// FuzzSyncRequest feeds the differ what an agent may send on its stream:
// any bytes that decode as a SyncRequest, first as the opening message and
// then as the answer to an update. It must never panic; anything malformed
// is an error, and the differ keeps serving a well-behaved node.
func FuzzSyncRequest(f *testing.F) {
	seeds := []*doormanv1.SyncRequest{
		{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n1"}}},
		{Message: &doormanv1.SyncRequest_Hello{Hello: &doormanv1.Hello{NodeName: "n1", Holding: &doormanv1.Holding{Version: 7, BucketDigests: make([]uint64, doormanv1.Buckets)}}}},
		{Message: &doormanv1.SyncRequest_Ack{Ack: &doormanv1.Ack{Version: 1001, ViewDigest: 3, NotProgrammed: []string{"x"}}}},
		{Message: &doormanv1.SyncRequest_Nack{Nack: &doormanv1.Nack{Version: 1001, Error: "no"}}},
	}
	for _, first := range seeds {
		for _, second := range seeds {
			a, _ := proto.Marshal(first)
			b, _ := proto.Marshal(second)
			f.Add(a, b)
		}
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		fx := newFixture(t, 0, 3)
		fx.node("n1")
		fx.node("n2")
		// A well-behaved node beside the fuzzed one.
		good := newAgent()
		goodTok := fx.hello(good, "n2")

		var open, answer doormanv1.SyncRequest
		if proto.Unmarshal(first, &open) != nil || proto.Unmarshal(second, &answer) != nil {
			return
		}
		hello := open.GetHello()
		if hello == nil {
			return
		}
		tok, err := fx.d.Hello(hello)
		if err != nil {
			return
		}
		if _, err := fx.d.Next(tok); err != nil {
			return
		}
		switch m := answer.GetMessage().(type) {
		case *doormanv1.SyncRequest_Ack:
			_ = fx.d.Ack(tok, m.Ack)
		case *doormanv1.SyncRequest_Nack:
			_ = fx.d.Nack(tok, m.Nack)
		}
		_, _ = fx.d.Next(tok)
		fx.d.Status()
		fx.d.Close(tok)
		// The other node is served as before.
		fx.sync(goodTok, good)
		fx.set("s0", "10.9.9.9")
		fx.sync(goodTok, good)
	})
}
