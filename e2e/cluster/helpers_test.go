package cluster

import "testing"

func TestMatchesSelector(t *testing.T) {
	n := Node{Name: "node2", Zone: "zone-b"}
	tests := []struct {
		name string
		sel  map[string]string
		want bool
	}{
		{"no selector", nil, true},
		{"hostname", map[string]string{"kubernetes.io/hostname": "node2"}, true},
		{"other hostname", map[string]string{"kubernetes.io/hostname": "node1"}, false},
		{"zone and os", map[string]string{"topology.kubernetes.io/zone": "zone-b", "kubernetes.io/os": "linux"}, true},
		{"unknown label", map[string]string{"gpu": "yes"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := matchesSelector(n, tt.sel); got != tt.want {
				t.Errorf("matchesSelector(%v) = %v, want %v", tt.sel, got, tt.want)
			}
		})
	}
}
