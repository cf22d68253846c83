package hub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/doorman-proxy/doorman/controlplane/internal/differ"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

func TestNothingServedBeforeSync(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Open(ctx, &doormanv1.Hello{NodeName: "n1"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open before sync = %v, want it to wait until the deadline", err)
	}
	if h.Ready() {
		t.Fatal("ready before MarkReady")
	}
	h.MarkReady()
	s, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.Next()
	if err != nil || f == nil {
		t.Fatalf("Next after sync = %v, %v", f, err)
	}
}

func TestReplacedSessionIsWokenAndStale(t *testing.T) {
	h := New(Config{VersionSeed: 1})
	h.MarkReady()
	old, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := old.Next(); err != nil {
		t.Fatal(err)
	}
	// Drain the wake-up Open left, so the next one comes from the
	// replacement.
	select {
	case <-old.Wake():
	default:
	}
	replacement, err := h.Open(context.Background(), &doormanv1.Hello{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer replacement.Close()
	select {
	case <-old.Wake():
	case <-time.After(time.Second):
		t.Fatal("the replaced session was not woken")
	}
	if _, err := old.Next(); !errors.Is(err, differ.ErrStale) {
		t.Fatalf("Next on the replaced session = %v, want ErrStale", err)
	}
}
