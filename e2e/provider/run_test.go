package provider

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeCluster records what Run did to it.
type fakeCluster struct {
	events *[]string
	err    error
}

func (f fakeCluster) Close() error {
	*f.events = append(*f.events, "close")
	return f.err
}

type fakeTests struct {
	events *[]string
	code   int
}

func (f fakeTests) Run() int {
	*f.events = append(*f.events, "tests")
	return f.code
}

func TestRun(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		startErr  error
		setupErr  error
		closeErr  error
		testsCode int
		done      func(code int) int
		want      int
		events    []string
	}{
		{name: "passing tests", want: 0, events: []string{"start", "setup", "tests", "close"}},
		{name: "failing tests keep their code", testsCode: 3, want: 3, events: []string{"start", "setup", "tests", "close"}},
		{name: "start fails: nothing to close", startErr: boom, want: 1, events: []string{"start"}},
		{name: "workload fails: no tests, cluster closed", setupErr: boom, want: 1, events: []string{"start", "setup", "close"}},
		{name: "close error keeps the tests' code", closeErr: boom, want: 0, events: []string{"start", "setup", "tests", "close"}},
		{
			name: "done decides before the teardown", testsCode: 0, want: 1,
			done:   func(int) int { return 1 },
			events: []string{"start", "setup", "tests", "done", "close"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var events []string
			p := Package[fakeCluster]{
				Name: "test",
				Start: func(ctx context.Context, _ Env) (fakeCluster, error) {
					if _, ok := ctx.Deadline(); !ok {
						t.Error("start-up context has no deadline")
					}
					events = append(events, "start")
					return fakeCluster{events: &events, err: tc.closeErr}, tc.startErr
				},
				Setup: func(context.Context, fakeCluster) error {
					events = append(events, "setup")
					return tc.setupErr
				},
			}
			if tc.done != nil {
				p.Done = func(_ fakeCluster, code int) int {
					events = append(events, "done")
					return tc.done(code)
				}
			}
			if got := Run(fakeTests{events: &events, code: tc.testsCode}, p); got != tc.want {
				t.Errorf("Run = %d, want %d", got, tc.want)
			}
			if diff := cmp.Diff(tc.events, events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTeardownClosesOnce(t *testing.T) {
	var events []string
	td := &teardown{ready: make(chan struct{})}
	done := make(chan error)
	go func() { done <- td.close() }() // a signal during start-up waits for Start
	td.set(fakeCluster{events: &events})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := td.close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"close"}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
