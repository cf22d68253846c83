package cache

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// holdingOf is the Hello's holding of entries at version.
func holdingOf(t *testing.T, version uint64, entries ...*doormanv1.Entry) *doormanv1.Holding {
	t.Helper()
	v, err := state.Restore(version, entries)
	if err != nil {
		t.Fatal(err)
	}
	return v.Holding()
}

// TestHead: the holding is written with the view and read back before
// the view (Begin), only for the version it names; Finish then restores
// the view.
func TestHead(t *testing.T) {
	web := entry(t, "web", "10.244.1.1")
	web2 := entry(t, "web", "10.244.1.2")
	saveWeb := func(c *Cache) error { return c.Save(1, []state.Change{{Key: web.Key, New: web}}) }
	for _, tc := range []struct {
		name        string
		steps       func(c *Cache) error
		want        *doormanv1.Holding
		wantVersion uint64
	}{
		{name: "never written: holds nothing", steps: func(*Cache) error { return nil }, want: &doormanv1.Holding{}},
		{name: "written without a holding", steps: saveWeb, wantVersion: 1},
		{
			name: "written with the view",
			steps: func(c *Cache) error {
				c.SetHolding(holdingOf(t, 1, web))
				return saveWeb(c)
			},
			want: holdingOf(t, 1, web), wantVersion: 1,
		},
		{
			name: "a later write of another version does not say",
			steps: func(c *Cache) error {
				c.SetHolding(holdingOf(t, 1, web))
				if err := saveWeb(c); err != nil {
					return err
				}
				return c.Save(2, []state.Change{{Key: web.Key, Old: web, New: web2}})
			},
			wantVersion: 2,
		},
		{
			name: "a write without one removes it",
			steps: func(c *Cache) error {
				c.SetHolding(holdingOf(t, 1, web))
				if err := saveWeb(c); err != nil {
					return err
				}
				c.SetHolding(nil)
				return c.Replace(1, map[string]*doormanv1.Entry{web2.Key: web2})
			},
			wantVersion: 1,
		},
		{
			name: "cleared with the view",
			steps: func(c *Cache) error {
				c.SetHolding(holdingOf(t, 1, web))
				if err := saveWeb(c); err != nil {
					return err
				}
				return c.Clear()
			},
			want: &doormanv1.Holding{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Begin(written(t, "node", tc.steps), "node")
			if err != nil {
				t.Fatal(err)
			}
			head := o.Head()
			if diff := cmp.Diff(tc.want, head.Holding, protocmp.Transform()); diff != "" {
				t.Errorf("holding (-want +got):\n%s", diff)
			}
			if head.Version != tc.wantVersion {
				t.Errorf("version %d, want %d", head.Version, tc.wantVersion)
			}
			if tc.wantVersion > 0 && time.Since(head.Confirmed) > time.Hour {
				t.Errorf("confirmed %v, want about now", head.Confirmed)
			}
			c, view, reset, err := o.Finish()
			if err != nil || reset != nil {
				t.Fatalf("Finish: %v, reset %+v", err, reset)
			}
			defer func() { _ = c.Close() }()
			if view.Version() != tc.wantVersion {
				t.Errorf("view restored at version %d, want %d", view.Version(), tc.wantVersion)
			}
		})
	}
}

// TestHeadOfUnreadableFile: a file that cannot be read says nothing in
// its head; Finish sets it aside and starts empty.
func TestHeadOfUnreadableFile(t *testing.T) {
	web := entry(t, "web", "10.244.1.1")
	path := written(t, "other-node", func(c *Cache) error {
		c.SetHolding(holdingOf(t, 1, web))
		return c.Save(1, []state.Change{{Key: web.Key, New: web}})
	})
	o, err := Begin(path, "node")
	if err != nil {
		t.Fatal(err)
	}
	if h := o.Head().Holding; h != nil {
		t.Errorf("holding of a file written for another node: %v, want none", h)
	}
	c, view, reset, err := o.Finish()
	if err != nil || reset == nil {
		t.Fatalf("Finish: %v, reset %+v; want the file set aside", err, reset)
	}
	defer func() { _ = c.Close() }()
	if view.Version() != 0 {
		t.Errorf("view at version %d, want empty", view.Version())
	}
}
