package hub

import (
	"testing"

	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// A session with an update in flight is not woken by later changes: its
// Ack wakes it, and its next update brings every change made meanwhile.
// An idle session is woken by each change.
func TestInFlightSessionWokenByItsAck(t *testing.T) {
	c := newLocalCluster(t, 3, true)
	busy, idle := c.sessions[0], c.sessions[1]
	for _, s := range c.sessions {
		select {
		case <-s.Wake():
		default:
		}
	}
	wake := func(s *Session) bool {
		select {
		case <-s.Wake():
			return true
		default:
			return false
		}
	}
	c.h.SetSlice(c.slice(0, 0, 1))
	u, err := busy.NextUpdate()
	if err != nil || u == nil {
		t.Fatalf("first change: NextUpdate = %v, %v", u, err)
	}
	if !wake(idle) {
		t.Fatal("an idle session was not woken by a change")
	}
	wake(busy) // the first change's, taken with its update
	c.h.SetSlice(c.slice(0, 1, 2))
	c.h.SetSlice(c.slice(0, 2, 3))
	if wake(busy) {
		t.Error("a session with an update in flight was woken by a change")
	}
	if !wake(idle) {
		t.Error("an idle session was not woken by the next changes")
	}
	if err := busy.Ack(&doormanv1.Ack{Version: u.Version, ViewDigest: u.ViewDigest}); err != nil {
		t.Fatal(err)
	}
	if !wake(busy) {
		t.Fatal("the session was not woken by its Ack")
	}
	next, err := busy.NextUpdate()
	if err != nil || next == nil {
		t.Fatalf("after the Ack: NextUpdate = %v, %v", next, err)
	}
	if next.Version != c.h.view.Version() {
		t.Errorf("after the Ack the update brings version %d, want the newest, %d", next.Version, c.h.view.Version())
	}
}
