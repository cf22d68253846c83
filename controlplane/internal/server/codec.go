package server

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
)

// codec passes *wire.Frame and *pooledFrame through as the message's bytes
// (a pooledFrame's shared bytes as a buffer of their own, not copied) and
// leaves everything else to the standard proto codec.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec { return codec{proto: encoding.GetCodecV2(proto.Name)} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*wire.Frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.Bytes)}, nil
	}
	if f, ok := v.(*pooledFrame); ok {
		var own mem.Buffer = mem.SliceBuffer(*f.buf)
		if f.pool != nil {
			own = mem.NewBuffer(f.buf, f.pool)
		}
		if len(f.shared) == 0 {
			return mem.BufferSlice{own}, nil
		}
		return mem.BufferSlice{own, mem.SliceBuffer(f.shared)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return proto.Name }

// Codec is the server option every gRPC server serving Register's services
// must be built with.
func Codec() grpc.ServerOption { return grpc.ForceServerCodecV2(newCodec()) }

// Options are the server options every gRPC server serving Register's
// services must be built with: the codec, and per-connection buffers sized
// for this traffic (agents send only small Acks, so a 4 KiB read buffer is
// plenty; gRPC takes the write buffer from a shared pool while a
// connection writes and gives it back when it is idle).
func Options() []grpc.ServerOption {
	return []grpc.ServerOption{
		Codec(),
		grpc.ReadBufferSize(4 << 10),
		grpc.WriteBufferSize(32 << 10),
	}
}
