package cache

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/doorman-proxy/doorman/nodeagent/internal/state"
	doormanv1 "github.com/doorman-proxy/doorman/proto/doorman/v1"
)

// TestKernelMark: the mark is written with the view in the same
// transaction, restored with it, written alone by SaveKernelMark, and
// absent from files written without one.
func TestKernelMark(t *testing.T) {
	web := entry(t, "web", "10.244.1.1")
	web2 := entry(t, "web", "10.244.1.2")
	saveWeb := func(c *Cache) error { return c.Save(1, []state.Change{{Key: web.Key, New: web}}) }
	for _, tc := range []struct {
		name  string
		steps func(c *Cache) error
		want  []byte
	}{
		{
			name:  "written without a mark",
			steps: saveWeb,
		},
		{
			name: "saved with the view",
			steps: func(c *Cache) error {
				c.SetKernelMark([]byte("one"))
				return saveWeb(c)
			},
			want: []byte("one"),
		},
		{
			name: "each write replaces it",
			steps: func(c *Cache) error {
				c.SetKernelMark([]byte("one"))
				if err := saveWeb(c); err != nil {
					return err
				}
				c.SetKernelMark([]byte("two"))
				return c.Replace(2, map[string]*doormanv1.Entry{web2.Key: web2})
			},
			want: []byte("two"),
		},
		{
			name: "a write without one removes it",
			steps: func(c *Cache) error {
				c.SetKernelMark([]byte("one"))
				if err := saveWeb(c); err != nil {
					return err
				}
				c.SetKernelMark(nil)
				return c.Save(2, []state.Change{{Key: web.Key, Old: web, New: web2}})
			},
		},
		{
			name: "saved alone",
			steps: func(c *Cache) error {
				if err := saveWeb(c); err != nil {
					return err
				}
				return c.SaveKernelMark(1, []byte("alone"))
			},
			want: []byte("alone"),
		},
		{
			name:  "not saved alone in a file without a view",
			steps: func(c *Cache) error { return c.SaveKernelMark(1, []byte("alone")) },
		},
		{
			name: "not saved alone over a later version's",
			steps: func(c *Cache) error {
				c.SetKernelMark([]byte("two"))
				if err := c.Save(2, []state.Change{{Key: web.Key, New: web}}); err != nil {
					return err
				}
				return c.SaveKernelMark(1, []byte("alone"))
			},
			want: []byte("two"),
		},
		{
			name: "cleared with the view",
			steps: func(c *Cache) error {
				c.SetKernelMark([]byte("one"))
				if err := saveWeb(c); err != nil {
					return err
				}
				return c.Clear()
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, reset, err := OpenView(written(t, "node", tc.steps), "node")
			if err != nil || reset != nil {
				t.Fatalf("OpenView: %v, reset %+v", err, reset)
			}
			defer func() { _ = c.Close() }()
			if diff := cmp.Diff(tc.want, c.KernelMark()); diff != "" {
				t.Errorf("mark restored (-want +got):\n%s", diff)
			}
		})
	}
}
