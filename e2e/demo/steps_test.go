package main

import "testing"

func TestContainsIP(t *testing.T) {
	tests := []struct {
		s, ip string
		want  bool
	}{
		{"10.96.0.10 . tcp . 80 . 0 : 10.244.1.2 . 8080", "10.244.1.2", true},
		{"10.96.0.10 . tcp . 80 . 0 : 10.244.1.23 . 8080", "10.244.1.2", false},
		{"10.96.0.10 . tcp . 80 . 0 : 110.244.1.2 . 8080", "10.244.1.2", false},
		{"10.244.1.2", "10.244.1.2", true},
		{"", "10.244.1.2", false},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			if got := containsIP(tt.s, tt.ip); got != tt.want {
				t.Errorf("containsIP(%q, %q) = %v, want %v", tt.s, tt.ip, got, tt.want)
			}
		})
	}
}
