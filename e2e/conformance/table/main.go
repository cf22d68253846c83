// Command table compares two runs of the upstream Kubernetes e2e tests,
// one against a cluster whose Services kube-proxy implements and one
// against the same cluster with doorman, from the JSON reports ginkgo
// writes (--json-report). It prints one row per test (test name,
// kube-proxy result, doorman result) and writes the same as JSON and
// Markdown.
//
// It exits 1 when doorman did not pass a test kube-proxy passed, or, when
// only doorman's report is given, when doorman failed any test: those are
// the results that make the run fail.
//
//	go run ./e2e/conformance/table -kube-proxy kp.json -doorman dm.json \
//	    -json results.json -md results.md
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	var o options
	flag.StringVar(&o.kubeProxy, "kube-proxy", "", "ginkgo JSON report of the run with kube-proxy (optional)")
	flag.StringVar(&o.doorman, "doorman", "", "ginkgo JSON report of the run with doorman (optional)")
	flag.StringVar(&o.jsonOut, "json", "", "write the table as JSON to this file")
	flag.StringVar(&o.mdOut, "md", "", "write the table as Markdown to this file")
	flag.StringVar(&o.command, "command", "", "the command that produced the reports, quoted in the Markdown")
	list := flag.String("list", "", "only print the names of the tests a report (e.g. of ginkgo --dry-run) selected, one a line")
	flag.Parse()
	if *list != "" {
		r, err := readReport(*list)
		if err != nil {
			fmt.Fprintln(os.Stderr, "table:", err)
			os.Exit(2)
		}
		for _, n := range r.order {
			fmt.Println(n)
		}
		return
	}
	rc, err := run(o, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(2)
	}
	os.Exit(rc)
}

type options struct {
	kubeProxy, doorman string
	jsonOut, mdOut     string
	command            string
}

func run(o options, stdout io.Writer) (int, error) {
	if o.kubeProxy == "" && o.doorman == "" {
		return 0, errors.New("give -kube-proxy, -doorman or both")
	}
	var kp, dm *runResult
	var err error
	if o.kubeProxy != "" {
		if kp, err = readReport(o.kubeProxy); err != nil {
			return 0, err
		}
	}
	if o.doorman != "" {
		if dm, err = readReport(o.doorman); err != nil {
			return 0, err
		}
	}
	t := compare(kp, dm)
	t.Command = o.command
	if err := writeText(stdout, t); err != nil {
		return 0, fmt.Errorf("print table: %w", err)
	}
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return 0, fmt.Errorf("write %s: %w", o.jsonOut, err)
		}
	}
	if o.mdOut != "" {
		var sb strings.Builder
		if err := writeMarkdown(&sb, t); err != nil {
			return 0, err
		}
		if err := os.WriteFile(o.mdOut, []byte(sb.String()), 0o644); err != nil {
			return 0, fmt.Errorf("write %s: %w", o.mdOut, err)
		}
	}
	if len(t.Regressions) > 0 {
		return 1, nil
	}
	return 0, nil
}

// The subset of ginkgo v2's types.Report the table needs; the field names
// are ginkgo's JSON names.
type ginkgoReport struct {
	SuiteDescription string
	StartTime        time.Time
	EndTime          time.Time
	SpecReports      []ginkgoSpec
}

type ginkgoSpec struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
	RunTime                 time.Duration
	Failure                 *struct {
		Message  string
		Location struct {
			FileName   string
			LineNumber int
		}
	}
}

// runResult is one proxy's run: each test's result by name, in the order
// the report lists them.
type runResult struct {
	duration time.Duration
	byName   map[string]result
	order    []string
}

type result struct {
	State   string        `json:"state"`
	Seconds float64       `json:"seconds"`
	Message string        `json:"message,omitempty"`
	dur     time.Duration // for the totals
}

func readReport(path string) (*runResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var reports []ginkgoReport
	if err := json.Unmarshal(b, &reports); err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	r := &runResult{byName: map[string]result{}}
	for _, rep := range reports {
		r.duration += rep.EndTime.Sub(rep.StartTime)
		for _, s := range rep.SpecReports {
			name, ok := specName(s)
			if !ok {
				continue
			}
			// Two specs with one name (a table's entries) stay apart.
			base := name
			for i := 2; ; i++ {
				if _, dup := r.byName[name]; !dup {
					break
				}
				name = fmt.Sprintf("%s (%d)", base, i)
			}
			res := result{State: s.State, Seconds: s.RunTime.Round(time.Second).Seconds(), dur: s.RunTime}
			if s.Failure != nil && s.Failure.Message != "" {
				res.Message = firstLine(s.Failure.Message)
			}
			r.byName[name] = res
			r.order = append(r.order, name)
		}
	}
	return r, nil
}

// specName names a spec as ginkgo's --focus and --skip see it: the
// container texts and the leaf's, joined by spaces (the Kubernetes
// framework puts each label, e.g. [Conformance], into the text). Specs the
// focus or skip filtered out are reported as skipped with no failure
// message (a spec that skips itself at run time, e2eskipper.Skipf, says
// why); they were not selected and are left out. Suite-level nodes
// (BeforeSuite, SynchronizedAfterSuite, ...) count only when they failed:
// then every test's result is in doubt and the row says why.
func specName(s ginkgoSpec) (string, bool) {
	if s.LeafNodeType != "It" {
		if s.State == "passed" || s.State == "skipped" {
			return "", false
		}
		return "[" + s.LeafNodeType + "]", true
	}
	if s.State == "skipped" && (s.Failure == nil || s.Failure.Message == "") {
		return "", false
	}
	return strings.Join(append(append([]string{}, s.ContainerHierarchyTexts...), s.LeafNodeText), " "), true
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	const limit = 300
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}

// notRun marks a test one run selected and the other did not report.
const notRun = "not run"

type row struct {
	Test      string  `json:"test"`
	KubeProxy *result `json:"kubeProxy,omitempty"`
	Doorman   *result `json:"doorman,omitempty"`
}

type summary struct {
	Ran     bool    `json:"ran"`
	Passed  int     `json:"passed"`
	Failed  int     `json:"failed"`
	Skipped int     `json:"skipped"`
	Minutes float64 `json:"minutes"`
}

type table struct {
	Command   string  `json:"command,omitempty"`
	Selected  int     `json:"selected"`
	KubeProxy summary `json:"kubeProxy"`
	Doorman   summary `json:"doorman"`
	// Regressions: tests kube-proxy passed and doorman did not; or, with
	// only doorman's run, the tests doorman failed.
	Regressions []string `json:"regressions"`
	Rows        []row    `json:"rows"`
}

func compare(kp, dm *runResult) table {
	names := map[string]bool{}
	for _, r := range []*runResult{kp, dm} {
		if r == nil {
			continue
		}
		for _, n := range r.order {
			names[n] = true
		}
	}
	t := table{Regressions: []string{}}
	for n := range names {
		t.Rows = append(t.Rows, row{Test: n, KubeProxy: lookup(kp, n), Doorman: lookup(dm, n)})
	}
	sort.Slice(t.Rows, func(i, j int) bool { return t.Rows[i].Test < t.Rows[j].Test })
	t.Selected = len(t.Rows)
	t.KubeProxy = summarize(kp)
	t.Doorman = summarize(dm)
	for _, r := range t.Rows {
		switch {
		case kp != nil && dm != nil:
			if r.KubeProxy.State == "passed" && r.Doorman.State != "passed" {
				t.Regressions = append(t.Regressions, r.Test)
			}
		case dm != nil:
			if failed(r.Doorman.State) {
				t.Regressions = append(t.Regressions, r.Test)
			}
		}
	}
	return t
}

func lookup(r *runResult, name string) *result {
	if r == nil {
		return nil
	}
	if res, ok := r.byName[name]; ok {
		return &res
	}
	return &result{State: notRun}
}

// failed: every ginkgo state other than passed, skipped and pending is a
// failure (failed, panicked, timedout, interrupted, aborted).
func failed(state string) bool {
	switch state {
	case "passed", "skipped", "pending", notRun:
		return false
	}
	return true
}

func summarize(r *runResult) summary {
	if r == nil {
		return summary{}
	}
	s := summary{Ran: true, Minutes: float64(r.duration.Round(6*time.Second)) / float64(time.Minute)}
	for _, res := range r.byName {
		switch {
		case res.State == "passed":
			s.Passed++
		case res.State == "skipped":
			s.Skipped++
		case failed(res.State):
			s.Failed++
		}
	}
	return s
}

func cell(r *result) string {
	if r == nil {
		return "-"
	}
	return r.State
}

// printer writes formatted text and keeps the first error, so a report is
// written in straight lines and checked once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

func writeText(w io.Writer, t table) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := &printer{w: tw}
	p.printf("TEST\tKUBE-PROXY\tDOORMAN\n")
	for _, r := range t.Rows {
		p.printf("%s\t%s\t%s\n", r.Test, cell(r.KubeProxy), cell(r.Doorman))
	}
	if p.err != nil {
		return p.err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p = &printer{w: w}
	p.printf("\nselected %d", t.Selected)
	for _, s := range []struct {
		name string
		sum  summary
	}{{"kube-proxy", t.KubeProxy}, {"doorman", t.Doorman}} {
		if s.sum.Ran {
			p.printf("; %s: %d passed, %d failed, %d skipped in %.1f min", s.name, s.sum.Passed, s.sum.Failed, s.sum.Skipped, s.sum.Minutes)
		}
	}
	p.printf("\n")
	for _, n := range t.Regressions {
		p.printf("REGRESSION: %s\n", n)
	}
	return p.err
}

func writeMarkdown(w io.Writer, t table) error {
	p := &printer{w: w}
	p.printf("# Upstream sig-network e2e: kube-proxy and doorman\n\n")
	if t.Command != "" {
		p.printf("Command: `%s`\n\n", t.Command)
	}
	p.printf("| | selected | passed | failed | skipped | minutes |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, s := range []struct {
		name string
		sum  summary
	}{{"kube-proxy (nftables)", t.KubeProxy}, {"doorman", t.Doorman}} {
		if !s.sum.Ran {
			p.printf("| %s | not run | | | | |\n", s.name)
			continue
		}
		p.printf("| %s | %d | %d | %d | %d | %.1f |\n", s.name, t.Selected, s.sum.Passed, s.sum.Failed, s.sum.Skipped, s.sum.Minutes)
	}
	p.printf("\n")
	if len(t.Regressions) > 0 {
		p.printf("Not passed by doorman although kube-proxy passed (or failed by doorman when only it ran):\n\n")
		for _, n := range t.Regressions {
			p.printf("- %s\n", mdEscape(n))
		}
		p.printf("\n")
	}
	p.printf("| test | kube-proxy | doorman |\n| --- | --- | --- |\n")
	for _, r := range t.Rows {
		p.printf("| %s | %s | %s |\n", mdEscape(r.Test), mdCell(r.KubeProxy), mdCell(r.Doorman))
	}
	return p.err
}

func mdCell(r *result) string {
	if r == nil {
		return "-"
	}
	if r.Message != "" && failed(r.State) {
		return r.State + ": " + mdEscape(r.Message)
	}
	return r.State
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
