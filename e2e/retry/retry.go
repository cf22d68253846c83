// Package retry waits for a condition in the e2e tests, the demo and the
// providers: one way to poll, with client-go's wait underneath, whose
// errors say what the last attempt found.
package retry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Interval is how often a condition is tried again.
const Interval = 100 * time.Millisecond

// Until calls fn at once and then every Interval until it returns nil. It
// gives up when timeout passes or ctx ends, with an error wrapping fn's
// last one.
func Until(ctx context.Context, timeout time.Duration, fn func() error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, Interval, timeout, true, func(context.Context) (bool, error) {
		last = fn()
		return last == nil, nil
	})
	switch {
	case err == nil:
		return nil
	case last == nil:
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
	default:
		return fmt.Errorf("not within %s: %w", timeout, last)
	}
}

// Eventually is Until for a test: it fails the test, saying what was
// awaited and what the last attempt found.
func Eventually(t testing.TB, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	if err := Until(context.Background(), timeout, fn); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
