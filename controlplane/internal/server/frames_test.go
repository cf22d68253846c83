package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/mem"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
)

func TestBudget(t *testing.T) {
	b := newBudget(100)
	ctx := context.Background()
	if n, err := b.acquire(ctx, 500, time.Hour); err != nil || n != 100 {
		t.Fatalf("acquire of more than the budget on an empty budget = %d, %v; want 100, nil", n, err)
	}
	got := make(chan int64, 1)
	go func() {
		n, _ := b.acquire(ctx, 10, time.Hour)
		got <- n
	}()
	select {
	case <-got:
		t.Fatal("acquire went through with the budget spent")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(100)
	if n := <-got; n != 10 || b.inUse() != 10 {
		t.Fatalf("after release: took %d, in use %d; want 10, 10", n, b.inUse())
	}
	if n, err := b.acquire(ctx, 95, 10*time.Millisecond); err != nil || n != 95 || b.inUse() != 105 {
		t.Fatalf("acquire past the wait = %d, %v, in use %d; want 95, nil, 105", n, err, b.inUse())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.acquire(cctx, 10, time.Hour); err == nil {
		t.Fatal("acquire with a cancelled context succeeded")
	}
}

// TestPooledFrameReleases: gRPC freeing the frame's buffer gives its
// share of the budget back, once.
func TestPooledFrameReleases(t *testing.T) {
	b := newBudget(1 << 20)
	enc := &encoder{budget: b, wait: time.Hour}
	u := &wire.Update{Version: 1, Full: true}
	for range 200 {
		u.Upserts = append(u.Upserts, &wire.Entry{Key: "k", Bytes: make([]byte, 64)})
	}
	m, err := enc.encode(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := m.(*pooledFrame)
	if !ok {
		t.Fatalf("encode returned %T for a %d-byte update, want *pooledFrame", m, u.Size())
	}
	if b.inUse() == 0 {
		t.Fatal("an encoded frame holds no budget")
	}
	data, err := newCodec().Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := data.Materialize(), u.Frame().Bytes; string(got) != string(want) {
		t.Errorf("pooled frame's bytes differ from the update's encoding")
	}
	data.Free()
	if got := b.inUse(); got != 0 {
		t.Errorf("budget in use after the frame was freed: %d, want 0", got)
	}
	var _ mem.BufferPool = &framePool{}
}
