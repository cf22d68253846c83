// Package configtest checks a binary's configuration file end to end,
// through the binary's own run function: every flag but the command-line-
// only ones is a field of the file --write-config-to writes, the written
// file reads back to the same configuration, and a bad value's error names
// its field.
package configtest

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/doorman-proxy/doorman/internal/config"
)

// Run is a binary's main logic on its own flag set and arguments.
type Run func(fs *flag.FlagSet, args []string) error

// Binary describes one binary's configuration for the checks.
type Binary struct {
	Name            string   // the flag set's name, e.g. "nodeagent"
	Kind            string   // the file's kind
	CommandLineOnly []string // flags that are not fields of the file
	// Args are flags given with --write-config-to, and Want the fields
	// they must give in the written file (numbers as float64, durations
	// as Go prints them).
	Args []string
	Want map[string]any
	// BadField is a numeric field given "x" in a file; the error must
	// name it.
	BadField string
}

// Check runs every check on b.
func Check(t *testing.T, run Run, b Binary) {
	t.Run("EveryFlagWrittenAndReadBack", func(t *testing.T) { checkWritten(t, run, b) })
	t.Run("ErrorNamesField", func(t *testing.T) { checkBadField(t, run, b) })
}

func checkWritten(t *testing.T, run Run, b Binary) {
	dir := t.TempDir()
	written := filepath.Join(dir, "written.yaml")
	fs := flag.NewFlagSet(b.Name, flag.ContinueOnError)
	if err := run(fs, append([]string{"--write-config-to=" + written}, b.Args...)); err != nil {
		t.Fatal(err)
	}
	fields := readFields(t, written)
	if fields["kind"] != b.Kind {
		t.Errorf("written kind %v, want %s", fields["kind"], b.Kind)
	}
	for name, want := range b.Want {
		if fields[name] != want {
			t.Errorf("written %s = %v, want %v", name, fields[name], want)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		_, present := fields[config.FieldName(f.Name)]
		if want := !slices.Contains(b.CommandLineOnly, f.Name); present != want {
			t.Errorf("--%s: field %s written %v, want %v", f.Name, config.FieldName(f.Name), present, want)
		}
	})

	again := filepath.Join(dir, "again.yaml")
	if err := run(flag.NewFlagSet(b.Name, flag.ContinueOnError), []string{"--config=" + written, "--write-config-to=" + again}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fields, readFields(t, again)); diff != "" {
		t.Errorf("read back (-written +again):\n%s", diff)
	}
}

func checkBadField(t *testing.T, run Run, b Binary) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	text := "apiVersion: " + config.APIVersion + "\nkind: " + b.Kind + "\n" + b.BadField + ": x\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(flag.NewFlagSet(b.Name, flag.ContinueOnError), []string{"--config=" + path, "--write-config-to=" + path + ".out"})
	if want := "field " + b.BadField + `: invalid value "x"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}

func readFields(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := yaml.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	return fields
}
