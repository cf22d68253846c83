package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReportTableAndJSON(t *testing.T) {
	var r report
	r.add("doorman", 10000, mKernelObjects, 50000)
	r.add("doorman", 1000, mRSS, 20<<20)
	r.add("kube-proxy-nftables", 1000, mRSS, 80<<20)
	r.add("doorman", 1000, mFullSync, 0.05)
	r.add("kube-proxy-nftables", 1000, mFullSync, 0.5)

	var buf bytes.Buffer
	r.table(&buf, []string{"doorman", "kube-proxy-nftables", "kube-proxy-iptables"}, proxyTable)
	got := buf.String()
	for _, want := range []string{"50.0ms", "500.0ms", "0.1", "20.0MiB", "80.0MiB", "0.25", "50000", "lower", mFullSync.Desc} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	// Rows by size, then in the registry's order, whatever the order
	// of the measurements.
	var rows []string
	for _, l := range strings.Split(got, "\n")[1:4] {
		f := strings.Fields(l)
		rows = append(rows, f[0]+" "+f[1])
	}
	if diff := cmp.Diff([]string{"1000 full_sync_seconds", "1000 rss_bytes", "10000 kernel_objects"}, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	// A metric the view does not show is named, not dropped silently.
	buf.Reset()
	r.add("doorman-controlplane", 1000, mNacks, 1)
	r.table(&buf, []string{"doorman"}, proxyTable)
	if !strings.Contains(buf.String(), "not in this table (see metrics.go): nacks") {
		t.Errorf("table does not name the unshown metric:\n%s", buf.String())
	}
	r.records = r.records[:len(r.records)-1]

	path := filepath.Join(t.TempDir(), "out.json")
	if err := r.writeJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back []Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.records, back); diff != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", diff)
	}
	read, err := readRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r.records, read.records); diff != "" {
		t.Errorf("readRecords (-want +got):\n%s", diff)
	}
	png := filepath.Join(t.TempDir(), "again.png")
	if err := runPlot([]string{"-in", path, "-out", png}); err != nil {
		t.Fatalf("plot from the records: %v", err)
	}
	if fi, err := os.Stat(png); err != nil || fi.Size() == 0 {
		t.Errorf("plot from the records: %v, %v", fi, err)
	}
	if err := runPlot([]string{"-in", path}); err == nil {
		t.Error("plot without -out: no error")
	}
	var raw []map[string]any
	_ = json.Unmarshal(b, &raw)
	if diff := cmp.Diff([]string{"metric", "services", "system", "unit", "value"}, keys(raw[0])); diff != "" {
		t.Errorf("record fields (-want +got):\n%s", diff)
	}
}

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 4", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"p99 of 20 is the max", ms(seq(20)...), 99, 20 * time.Millisecond},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	var s []int
	for i := 1; i <= n; i++ {
		s = append(s, i)
	}
	return s
}

func TestCountSave(t *testing.T) {
	save := `*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-ABC
-A KUBE-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-DEF
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`
	rules, chains := countSave(save)
	if rules != 4 || chains != 3 {
		t.Errorf("countSave = %d rules, %d chains; want 4, 3", rules, chains)
	}
	if got := countServiceJumps(save); got != 2 {
		t.Errorf("countServiceJumps = %d, want 2", got)
	}
}

func TestWritePlot(t *testing.T) {
	var r report
	for _, n := range []int{1000, 10000, 100000} {
		r.add("doorman", n, mChangeP50, 0.01)
		r.add("doorman", n, mChangeP99, 0.02)
		r.add("kube-proxy-nftables", n, mChangeP50, float64(n)/1e4)
	}
	path := filepath.Join(t.TempDir(), "plot.png")
	panels := plotPanels(&r, []string{"doorman", "kube-proxy-nftables"}, proxyPlot)
	if len(panels) != 2 {
		t.Fatalf("%d panels, want the proxy plot's 2 (changes, full sync)", len(panels))
	}
	var labels []string
	for _, s := range panels[0].Series {
		labels = append(labels, s.Label)
	}
	if diff := cmp.Diff([]string{"doorman p50", "doorman p99", "kube-proxy-nftables p50"}, labels); diff != "" {
		t.Fatalf("series (-want +got):\n%s", diff)
	}
	if got := len(panels[1].Series); got != 0 {
		t.Errorf("full-sync panel has %d series, want none", got)
	}
	if err := writePlot(path, panels); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	// The doorman series is drawn in its colour somewhere.
	found := false
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y && !found; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			if r, g, b, _ := img.At(x, y).RGBA(); r>>8 == 0x1f && g>>8 == 0x77 && b>>8 == 0xb4 {
				found = true
				break
			}
		}
	}
	if !found {
		t.Error("no pixel in doorman's colour")
	}
}
