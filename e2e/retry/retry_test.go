package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	calls := 0
	if err := Until(context.Background(), time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || calls != 3 {
		t.Fatalf("Until: %v after %d calls, want nil after 3", err, calls)
	}

	last := errors.New("still 503")
	err := Until(context.Background(), 250*time.Millisecond, func() error { return last })
	if !errors.Is(err, last) || !strings.Contains(err.Error(), "not within 250ms") {
		t.Fatalf("Until past its timeout: %v, want it to say so and wrap the last error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = Until(ctx, time.Minute, func() error { return last })
	if !errors.Is(err, context.Canceled) || !errors.Is(err, last) {
		t.Fatalf("Until with its context ended: %v, want context.Canceled and the last error", err)
	}
}
