package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tables are the views a metric must appear in at least one of.
const tables = proxyTable | scaleTable

func TestMetricRegistry(t *testing.T) {
	var panelViews view
	for _, p := range panels {
		panelViews |= p.View
		shown := metricsShown(p.View)
		if len(shown) == 0 {
			t.Errorf("panel %q shows no metric", p.Title)
		}
		for _, m := range shown {
			if len(shown) > 1 && m.Legend == "" {
				t.Errorf("%s: no Legend, but panel %q plots several metrics", m.Key, p.Title)
			}
		}
	}
	for _, m := range registry {
		if m.Shown&tables == 0 {
			t.Errorf("%s: in no table", m.Key)
		}
		if extra := m.Shown &^ (tables | panelViews); extra != 0 {
			t.Errorf("%s: shown in views %b that no table or panel draws", m.Key, extra)
		}
		if m.Desc == "" {
			t.Errorf("%s: no description", m.Key)
		}
		if !slices.Contains([]unit{unitSeconds, unitBytes, unitCount, unitRatio}, m.Unit) {
			t.Errorf("%s: unit %q", m.Key, m.Unit)
		}
	}
	for _, v := range append([]view{proxyTable, scaleTable}, viewsOf(panels)...) {
		seen := map[string]bool{}
		for _, m := range metricsShown(v) {
			if seen[m.Key] {
				t.Errorf("view %b shows two metrics keyed %s", v, m.Key)
			}
			seen[m.Key] = true
		}
	}
}

func viewsOf(ps []panelSpec) []view {
	var out []view
	for _, p := range ps {
		out = append(out, p.View)
	}
	return out
}

// TestMetricsRecordedAreRegistered reads the package's source: a metric
// is made only by register (so whatever report.add records is in the
// registry), and each registered metric of metrics.go is used by the
// measuring code (so none is registered and never recorded).
func TestMetricsRecordedAreRegistered(t *testing.T) {
	files := parseSources(t)
	for name, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok && isIdent(call.Fun, "register") {
				return false // the registry's own literal
			}
			if lit, ok := n.(*ast.CompositeLit); ok && isIdent(lit.Type, "metric") {
				t.Errorf("%s: a metric made outside register: %s", name, files.pos(lit))
			}
			return true
		})
	}
	used := map[string]bool{}
	for name, f := range files {
		if name == "metrics.go" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				used[id.Name] = true
			}
			return true
		})
	}
	for _, name := range registeredVars(files["metrics.go"]) {
		if !used[name] {
			t.Errorf("metrics.go: %s is registered but never recorded", name)
		}
	}
}

// sources are the package's non-test files by name.
type sources map[string]*ast.File

var fset = token.NewFileSet()

func (sources) pos(n ast.Node) string { return fset.Position(n.Pos()).String() }

func parseSources(t *testing.T) sources {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := sources{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = f
	}
	if out["metrics.go"] == nil {
		t.Fatal("no metrics.go")
	}
	return out
}

// registeredVars are the package-level variables whose value registers
// metrics: register(…), or a function of metrics.go that calls it.
func registeredVars(f *ast.File) []string {
	registering := map[string]bool{"register": true}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name != "register" && calls(fn.Body, "register") {
			registering[fn.Name.Name] = true
		}
	}
	var out []string
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, v := range vs.Values {
				if call, ok := v.(*ast.CallExpr); ok {
					if id, ok := call.Fun.(*ast.Ident); ok && registering[id.Name] {
						out = append(out, vs.Names[i].Name)
					}
				}
			}
		}
	}
	return out
}

func calls(n ast.Node, fn string) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && isIdent(call.Fun, fn) {
			found = true
		}
		return !found
	})
	return found
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
