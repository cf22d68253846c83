// Command flagsdoc writes docs/flags.md from the binaries' own flag sets:
// every flag of controlplane and nodeagent with its field in the --config
// file (read from what --write-config-to writes), type, default and
// description, and every kube-proxy v1.36 flag mapped to doorman's or
// marked not applicable with the reason (kube-proxy.tsv). With -check it
// writes nothing and fails if docs/flags.md is stale, if a kube-proxy flag
// has no row in kube-proxy.tsv, or if a row names a doorman flag that does
// not exist; make verify runs it so.
//
//	go run ./hack/flagsdoc          # rewrite docs/flags.md
//	go run ./hack/flagsdoc -check   # fail if it is stale
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/doorman-proxy/doorman/internal/config"
)

// binaries are documented in this order.
var binaries = []string{"controlplane", "nodeagent"}

func main() {
	check := flag.Bool("check", false, "fail if docs/flags.md is stale instead of writing it")
	out := flag.String("out", "docs/flags.md", "the page to write or check")
	flag.Parse()
	if err := run(*check, *out); err != nil {
		fmt.Fprintln(os.Stderr, "flagsdoc:", err)
		os.Exit(1)
	}
}

func run(check bool, out string) error {
	sets := map[string][]Flag{}
	for _, b := range binaries {
		help, err := helpOf(b)
		if err != nil {
			return err
		}
		if sets[b], err = parseHelp(help); err != nil {
			return fmt.Errorf("%s -h: %w", b, err)
		}
		if err := addFields(b, sets[b]); err != nil {
			return err
		}
	}
	known, err := readLines(filepath.Join("hack", "flagsdoc", "kube-proxy-flags.txt"))
	if err != nil {
		return err
	}
	rows, err := readMapping(filepath.Join("hack", "flagsdoc", "kube-proxy.tsv"))
	if err != nil {
		return err
	}
	if err := checkMapping(known, rows, sets); err != nil {
		return err
	}
	page := render(sets, rows)
	if !check {
		return os.WriteFile(out, page, 0o644)
	}
	have, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, page) {
		return fmt.Errorf("%s is stale: run go run ./hack/flagsdoc", out)
	}
	return nil
}

// helpOf runs the binary's main package with -h and returns what it
// printed.
func helpOf(bin string) (string, error) {
	cmd := exec.Command("go", "run", "./"+bin, "-h")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return "", fmt.Errorf("go run ./%s -h: %w", bin, err)
	}
	return buf.String(), nil
}

// A Flag is one line of a flag set's documentation.
type Flag struct {
	Name, Type, Default, Usage string
	// Field is the flag's field in the configuration file ("" = the flag
	// is command-line only).
	Field string
}

// addFields fills in each flag's configuration field: the fields the
// binary's --write-config-to writes, each named as config.FieldName names
// the flag.
func addFields(bin string, flags []Flag) error {
	dir, err := os.MkdirTemp("", "flagsdoc")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	path := filepath.Join(dir, bin+".yaml")
	if out, err := exec.Command("go", "run", "./"+bin, "--write-config-to="+path).CombinedOutput(); err != nil {
		return fmt.Errorf("go run ./%s --write-config-to: %w: %s", bin, err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var fields map[string]any
	if err := yaml.Unmarshal(data, &fields); err != nil {
		return fmt.Errorf("%s --write-config-to: %w", bin, err)
	}
	for i, f := range flags {
		if _, ok := fields[config.FieldName(f.Name)]; ok {
			flags[i].Field = config.FieldName(f.Name)
		}
	}
	return nil
}

var defaultRE = regexp.MustCompile(` \(default (.*)\)$`)

// parseHelp reads the flag package's PrintDefaults format: "  -name type"
// then the usage on lines starting with "    \t".
func parseHelp(help string) ([]Flag, error) {
	var flags []Flag
	sc := bufio.NewScanner(strings.NewReader(help))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "  -"):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "  -"), " ")
			f := Flag{Name: name, Type: strings.TrimSpace(typ)}
			if f.Type == "" {
				f.Type = "bool"
			}
			if i := strings.Index(name, "\t"); i >= 0 { // a bool flag with a one-letter name
				f.Name = name[:i]
			}
			flags = append(flags, f)
		case strings.HasPrefix(line, "    \t") && len(flags) > 0:
			f := &flags[len(flags)-1]
			f.Usage = strings.TrimSpace(f.Usage + " " + strings.TrimSpace(line))
		}
	}
	if len(flags) == 0 {
		return nil, errors.New("no flags found")
	}
	for i := range flags {
		if m := defaultRE.FindStringSubmatch(flags[i].Usage); m != nil {
			flags[i].Default = m[1]
			flags[i].Usage = strings.TrimSuffix(flags[i].Usage, m[0])
		}
	}
	return flags, nil
}

// A Row maps one kube-proxy flag: Doorman is "binary --flag[, ...]" or
// "-" with the reason in Note.
type Row struct {
	KubeProxy, Doorman, Note string
}

func readLines(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

func readMapping(path string) ([]Row, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	var rows []Row
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("%s: row %d: want 3 tab-separated fields, got %d: %q", path, i+1, len(f), l)
		}
		rows = append(rows, Row{KubeProxy: f[0], Doorman: f[1], Note: f[2]})
	}
	return rows, nil
}

// checkMapping: every kube-proxy flag has exactly one row, every row is a
// kube-proxy flag, and every doorman flag a row names exists.
func checkMapping(known []string, rows []Row, sets map[string][]Flag) error {
	var errs []error
	seen := map[string]bool{}
	for _, r := range rows {
		if !slices.Contains(known, r.KubeProxy) {
			errs = append(errs, fmt.Errorf("kube-proxy.tsv: --%s is not a kube-proxy flag", r.KubeProxy))
		}
		if seen[r.KubeProxy] {
			errs = append(errs, fmt.Errorf("kube-proxy.tsv: --%s mapped twice", r.KubeProxy))
		}
		seen[r.KubeProxy] = true
		if r.Doorman == "-" {
			if r.Note == "" {
				errs = append(errs, fmt.Errorf("kube-proxy.tsv: --%s: not applicable without a reason", r.KubeProxy))
			}
			continue
		}
		for _, ref := range strings.Split(r.Doorman, ", ") {
			bin, name, ok := strings.Cut(ref, " --")
			if !ok || !slices.ContainsFunc(sets[bin], func(f Flag) bool { return f.Name == name }) {
				errs = append(errs, fmt.Errorf("kube-proxy.tsv: --%s maps to %q, which is no flag of controlplane or nodeagent", r.KubeProxy, ref))
			}
		}
	}
	for _, k := range known {
		if !seen[k] {
			errs = append(errs, fmt.Errorf("kube-proxy.tsv: kube-proxy's --%s has no row", k))
		}
	}
	return errors.Join(errs...)
}

func render(sets map[string][]Flag, rows []Row) []byte {
	var b bytes.Buffer
	b.WriteString("# Flags\n\n")
	b.WriteString("Generated by `go run ./hack/flagsdoc` from the binaries' own flag sets; `make verify` fails when it is stale.\n")
	b.WriteString("Flags are written `--name=value` (one dash works too).\n")
	b.WriteString("Each flag with a config field can also be set in the file `--config` reads (apiVersion `" + config.APIVersion + "`, kind `" +
		config.ControlPlaneKind + "` or `" + config.NodeAgentKind + "`); the command line overrides the file: see operating.md.\n\n")
	for _, bin := range binaries {
		fmt.Fprintf(&b, "## %s\n\n| flag | config field | type | default | what it does |\n| --- | --- | --- | --- | --- |\n", bin)
		for _, f := range sets[bin] {
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s | %s |\n", f.Name, fieldCell(f.Field), cell(f.Type), code(f.Default), cell(f.Usage))
		}
		b.WriteString("\n")
	}
	b.WriteString("## kube-proxy's flags\n\n")
	b.WriteString("Every flag of kube-proxy v1.36.3 and what takes its place in doorman. \"not applicable\" says why. ")
	b.WriteString("doorman does not read kube-proxy's KubeProxyConfiguration: the config field column gives the doorman field that holds the same setting.\n\n")
	b.WriteString("| kube-proxy | doorman | config field | note |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		d, fields := "not applicable", ""
		if r.Doorman != "-" {
			var refs, fs []string
			for _, ref := range strings.Split(r.Doorman, ", ") {
				refs = append(refs, "`"+ref+"`")
				bin, name, _ := strings.Cut(ref, " --")
				fs = append(fs, bin+" "+fieldCell(fieldOf(sets[bin], name)))
			}
			d, fields = strings.Join(refs, ", "), strings.Join(fs, ", ")
		}
		fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", r.KubeProxy, d, fields, cell(r.Note))
	}
	return b.Bytes()
}

func fieldOf(flags []Flag, name string) string {
	for _, f := range flags {
		if f.Name == name {
			return f.Field
		}
	}
	return ""
}

func fieldCell(field string) string {
	if field == "" {
		return "command line only"
	}
	return "`" + field + "`"
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "`", "'") + "`"
}
