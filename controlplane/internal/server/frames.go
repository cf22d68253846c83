package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/mem"

	"github.com/doorman-proxy/doorman/controlplane/internal/wire"
)

// Encoded updates are the control plane's largest transient memory: a full
// view of 10,000 Services is about a megabyte per node, and after a restart
// every node asks for one at once. gRPC tells when a frame's bytes are
// written to the connection (it puts the buffer back to its pool), and the
// bytes encoded but not yet written are bounded by a budget shared by all
// streams: a stream whose frame does not fit waits until earlier
// frames are written. The budget is soft: a frame that has waited
// frameBudgetWait is sent anyway, so a node that stops reading cannot stall
// the others.
const (
	frameBudgetBytes = 8 << 20
	frameBudgetWait  = 2 * time.Second
)

// budget counts the bytes of frames encoded and not yet written.
type budget struct {
	limit int64

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced on every release
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{})}
}

// acquire takes n bytes (at most the whole budget) and returns how many
// it took, to be released. It waits while the budget is spent, at most
// wait; ctx ending returns its error.
func (b *budget) acquire(ctx context.Context, n int64, wait time.Duration) (int64, error) {
	n = min(n, b.limit)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return n, nil
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			b.mu.Lock()
			b.used += n
			b.mu.Unlock()
			return n, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// inUse is the bytes taken and not released.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// pooledFrame is an encoded update holding its share of the budget; the
// codec hands the buffer to gRPC with framePool as its pool, and gRPC puts
// it back (so releasing the budget) once the bytes are written. The bytes
// are then garbage: the buffers are sized exactly, not kept in a pool.
//
// A full view's entries that every node holds alike (wire.Body) follow as
// shared: they are encoded once per version, never copied per node, so
// they are outside the budget; after a restart every node's full view is
// then a few hundred bytes of its own.
type pooledFrame struct {
	buf    *[]byte
	pool   *framePool // nil: a small frame, outside the budget
	shared []byte
}

// framePool is mem.BufferPool for one frame: Put releases the frame's
// share of the budget.
type framePool struct {
	budget *budget
	n      int64
	once   sync.Once
}

func (p *framePool) Get(length int) *[]byte {
	b := make([]byte, length)
	return &b
}

func (p *framePool) Put(*[]byte) { p.once.Do(func() { p.budget.release(p.n) }) }

// encoder turns updates into frames within the budget.
type encoder struct {
	budget *budget
	wait   time.Duration
}

// encode returns the message to send for u: a *wire.Frame for a small
// update with nothing shared, else a *pooledFrame.
func (e *encoder) encode(ctx context.Context, u *wire.Update) (any, error) {
	var shared []byte
	if u.Shared != nil {
		shared = u.Shared.Bytes
	}
	size := u.OwnSize()
	if mem.IsBelowBufferPoolingThreshold(size) {
		if len(shared) == 0 {
			return u.Frame(), nil
		}
		b := u.AppendOwn(make([]byte, 0, size))
		return &pooledFrame{buf: &b, shared: shared}, nil
	}
	n, err := e.budget.acquire(ctx, int64(size), e.wait)
	if err != nil {
		return nil, err
	}
	b := u.AppendOwn(make([]byte, 0, size))
	return &pooledFrame{buf: &b, pool: &framePool{budget: e.budget, n: n}, shared: shared}, nil
}
