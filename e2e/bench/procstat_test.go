package main

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseUsage(t *testing.T) {
	tests := []struct {
		name, status, stat string
		want               usage
		wantErr            bool
	}{
		{
			name:   "process with spaces in its name",
			status: "Name:\tkube proxy\nVmPeak:\t  9000 kB\nVmHWM:\t   90112 kB\nVmRSS:\t   80128 kB\nRssAnon:\t   60000 kB\nRssFile:\t   20128 kB\nThreads:\t12\n",
			stat:   "4242 (kube proxy) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 100 0 0",
			want:   usage{RSSBytes: 80128 * 1024, PeakRSS: 90112 * 1024, RSSAnon: 60000 * 1024, RSSFile: 20128 * 1024, CPUSeconds: 3.25},
		},
		{name: "no VmRSS (zombie)", status: "Name:\tx\n", stat: "1 (x) Z 0 0 0 0 0 0 0 0 0 0 0 0", wantErr: true},
		{name: "truncated stat", status: "VmRSS:\t1 kB\n", stat: "1 (x) S 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUsage(tt.status, tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("parseUsage (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestReadUsageSelf(t *testing.T) {
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSBytes < 1<<20 {
		t.Errorf("own RSS %d bytes: want at least 1 MiB", u.RSSBytes)
	}
	if u.RSSAnon == 0 || u.RSSFile == 0 {
		t.Errorf("own RssAnon %d, RssFile %d bytes: want both read", u.RSSAnon, u.RSSFile)
	}
}
