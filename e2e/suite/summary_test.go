//go:build e2e

package suite

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// The suite's summary: how many tests ran, passed, failed and were not
// applicable on this provider, printed by TestMain after the run. Every
// test calls track first (TestEveryTestIsTracked checks), and every skip
// goes through skipAs with a category and a reason.

type outcome struct {
	name             string
	failed, skipped  bool
	category, reason string
}

type skip struct{ name, category, reason string }

var (
	summaryMu sync.Mutex
	outcomes  []outcome
	skips     = map[string]skip{} // by test name (subtests too)
)

// track counts the test in the summary.
func track(t *testing.T) {
	t.Cleanup(func() {
		summaryMu.Lock()
		defer summaryMu.Unlock()
		o := outcome{name: t.Name(), failed: t.Failed(), skipped: t.Skipped()}
		if s, ok := skips[t.Name()]; ok && o.skipped {
			o.category, o.reason = s.category, s.reason
		}
		outcomes = append(outcomes, o)
	})
}

// skipAs skips the test (or subtest) and records why: category groups
// skips in the summary ("not applicable on kind"), reason is the sentence.
func skipAs(t *testing.T, category, reason string) {
	t.Helper()
	summaryMu.Lock()
	skips[t.Name()] = skip{name: t.Name(), category: category, reason: reason}
	summaryMu.Unlock()
	t.Skipf("%s: %s", category, reason)
}

// notApplicable skips what cannot run on this provider; e2e/suite/README.md
// lists each case with its reason.
func notApplicable(t *testing.T, reason string) {
	t.Helper()
	skipAs(t, "not applicable on "+prov.Name(), reason)
}

// summarize writes the summary and reports whether any test ran.
func summarize(w io.Writer, provider string) bool {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	var passed, failed int
	byCategory := map[string][]outcome{}
	for _, o := range outcomes {
		switch {
		case o.failed:
			failed++
		case o.skipped:
			cat := o.category
			if cat == "" {
				cat = "skipped without a recorded reason"
			}
			byCategory[cat] = append(byCategory[cat], o)
		default:
			passed++
		}
	}
	notApp := len(byCategory["not applicable on "+provider])
	_, _ = fmt.Fprintf(w, "\ne2e summary on %s: %d tests ran, %d passed, %d failed, %d not applicable on %s, %d skipped otherwise\n",
		provider, len(outcomes), passed, failed, notApp, provider, len(outcomes)-passed-failed-notApp)
	cats := make([]string, 0, len(byCategory))
	for c := range byCategory {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		_, _ = fmt.Fprintf(w, "  %s:\n", c)
		for _, o := range byCategory[c] {
			_, _ = fmt.Fprintf(w, "    %s: %s\n", o.name, o.reason)
		}
	}
	// Parts of tests that passed or failed but left something out.
	var parts []skip
	for name, s := range skips {
		if strings.Contains(name, "/") {
			parts = append(parts, s)
		}
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].name < parts[j].name })
	if len(parts) > 0 {
		_, _ = fmt.Fprintln(w, "  parts of tests not run:")
		for _, s := range parts {
			_, _ = fmt.Fprintf(w, "    %s (%s): %s\n", s.name, s.category, s.reason)
		}
	}
	return len(outcomes) > 0
}

// Every Test function's first statement is track(t), so the summary
// counts every test that ran.
func TestEveryTestIsTracked(t *testing.T) {
	track(t)
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, f := range files {
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			n++
			if !startsWithTrack(fn) {
				t.Errorf("%s: %s does not call track(t) first", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if n < 10 {
		t.Errorf("found only %d test functions in %v", n, files)
	}
}

func startsWithTrack(fn *ast.FuncDecl) bool {
	if fn.Body == nil || len(fn.Body.List) == 0 {
		return false
	}
	es, ok := fn.Body.List[0].(*ast.ExprStmt)
	if !ok {
		return false
	}
	call, ok := es.X.(*ast.CallExpr)
	if !ok {
		return false
	}
	id, ok := call.Fun.(*ast.Ident)
	return ok && id.Name == "track"
}
