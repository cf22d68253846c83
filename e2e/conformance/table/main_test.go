package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// spec builds one entry of a ginkgo JSON report as ginkgo writes it.
func spec(leafType, state, msg string, texts ...string) map[string]any {
	s := map[string]any{
		"ContainerHierarchyTexts": texts[:len(texts)-1],
		"LeafNodeType":            leafType,
		"LeafNodeText":            texts[len(texts)-1],
		"State":                   state,
		"StartTime":               "2026-01-01T00:00:00Z",
		"RunTime":                 int64(3 * time.Second),
	}
	if msg != "" {
		s["Failure"] = map[string]any{"Message": msg, "Location": map[string]any{"FileName": "x.go", "LineNumber": 1}}
	}
	return s
}

func writeReport(t *testing.T, specs ...map[string]any) string {
	t.Helper()
	b, err := json.Marshal([]map[string]any{{
		"SuiteDescription": "Kubernetes e2e suite",
		"StartTime":        "2026-01-01T00:00:00Z",
		"EndTime":          "2026-01-01T00:12:00Z",
		"SpecReports":      specs,
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadReport(t *testing.T) {
	tests := []struct {
		name  string
		specs []map[string]any
		want  []string
	}{
		{
			name: "filtered out specs are not selected, run-time skips are",
			specs: []map[string]any{
				spec("It", "passed", "", "[sig-network] Services", "should serve [Conformance]"),
				spec("It", "skipped", "", "[sig-network] Netpol", "should deny"),
				spec("It", "skipped", "Requires at least 2 nodes", "[sig-network] Services", "should work from two nodes"),
			},
			want: []string{"[sig-network] Services should serve [Conformance]", "[sig-network] Services should work from two nodes"},
		},
		{
			name: "suite nodes count only when they fail",
			specs: []map[string]any{
				spec("SynchronizedBeforeSuite", "passed", "", ""),
				spec("SynchronizedAfterSuite", "failed", "cleanup failed", ""),
			},
			want: []string{"[SynchronizedAfterSuite]"},
		},
		{
			name: "two specs with one name stay apart",
			specs: []map[string]any{
				spec("It", "passed", "", "[sig-network] DNS", "should resolve"),
				spec("It", "failed", "boom", "[sig-network] DNS", "should resolve"),
			},
			want: []string{"[sig-network] DNS should resolve", "[sig-network] DNS should resolve (2)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReport(writeReport(t, tt.specs...))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, r.order); diff != "" {
				t.Errorf("selected (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadReportRejectsGarbage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(p, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readReport(p)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("readReport(garbage) = %v, want an error naming %s", err, p)
	}
}

func TestRun(t *testing.T) {
	const (
		affinity = "[sig-network] Services should have session affinity work for service with type clusterIP [LinuxOnly] [Conformance]"
		reject   = "[sig-network] Services should be rejected when no endpoints exist"
		dnsOnly  = "[sig-network] DNS should provide DNS for services [Conformance]"
	)
	kp := writeReport(t,
		spec("It", "passed", "", "[sig-network] Services", "should have session affinity work for service with type clusterIP [LinuxOnly] [Conformance]"),
		spec("It", "passed", "", "[sig-network] Services", "should be rejected when no endpoints exist"),
	)
	dm := writeReport(t,
		spec("It", "passed", "", "[sig-network] Services", "should have session affinity work for service with type clusterIP [LinuxOnly] [Conformance]"),
		spec("It", "failed", "connection timed out\nmore detail", "[sig-network] Services", "should be rejected when no endpoints exist"),
		spec("It", "failed", "no answer", "[sig-network] DNS", "should provide DNS for services [Conformance]"),
	)
	tests := []struct {
		name            string
		o               options
		wantRC          int
		wantRegressions []string
		wantRows        []row
	}{
		{
			name:   "both runs: doorman failing what kube-proxy passed fails the run",
			o:      options{kubeProxy: kp, doorman: dm},
			wantRC: 1, wantRegressions: []string{reject},
			wantRows: []row{
				{Test: dnsOnly, KubeProxy: &result{State: notRun}, Doorman: &result{State: "failed", Seconds: 3, Message: "no answer"}},
				{Test: reject, KubeProxy: &result{State: "passed", Seconds: 3}, Doorman: &result{State: "failed", Seconds: 3, Message: "connection timed out"}},
				{Test: affinity, KubeProxy: &result{State: "passed", Seconds: 3}, Doorman: &result{State: "passed", Seconds: 3}},
			},
		},
		{
			name:   "kube-proxy alone never fails the run",
			o:      options{kubeProxy: kp},
			wantRC: 0, wantRegressions: []string{},
			wantRows: []row{
				{Test: reject, KubeProxy: &result{State: "passed", Seconds: 3}},
				{Test: affinity, KubeProxy: &result{State: "passed", Seconds: 3}},
			},
		},
		{
			name:   "doorman alone: any failure fails the run",
			o:      options{doorman: dm},
			wantRC: 1, wantRegressions: []string{dnsOnly, reject},
			wantRows: []row{
				{Test: dnsOnly, Doorman: &result{State: "failed", Seconds: 3, Message: "no answer"}},
				{Test: reject, Doorman: &result{State: "failed", Seconds: 3, Message: "connection timed out"}},
				{Test: affinity, Doorman: &result{State: "passed", Seconds: 3}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.o.jsonOut = filepath.Join(dir, "results.json")
			tt.o.mdOut = filepath.Join(dir, "results.md")
			var stdout bytes.Buffer
			rc, err := run(tt.o, &stdout)
			if err != nil {
				t.Fatal(err)
			}
			if rc != tt.wantRC {
				t.Errorf("exit code %d, want %d; output:\n%s", rc, tt.wantRC, stdout.String())
			}
			b, err := os.ReadFile(tt.o.jsonOut)
			if err != nil {
				t.Fatal(err)
			}
			var got table
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantRegressions, got.Regressions); diff != "" {
				t.Errorf("regressions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantRows, got.Rows, cmpIgnoreDur); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
			md, err := os.ReadFile(tt.o.mdOut)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.wantRows {
				if !strings.Contains(string(md), r.Test) {
					t.Errorf("markdown lacks a row for %q:\n%s", r.Test, md)
				}
			}
			for _, n := range tt.wantRegressions {
				if !strings.Contains(stdout.String(), "REGRESSION: "+n) {
					t.Errorf("stdout does not name regression %q:\n%s", n, stdout.String())
				}
			}
		})
	}
}

// The JSON round trip drops the unexported duration; compare the rest.
var cmpIgnoreDur = cmp.Comparer(func(a, b result) bool {
	return a.State == b.State && a.Seconds == b.Seconds && a.Message == b.Message
})

func TestRunNeedsAReport(t *testing.T) {
	if _, err := run(options{}, &bytes.Buffer{}); err == nil {
		t.Fatal("run without reports succeeded")
	}
}
