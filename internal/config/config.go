package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// APIVersion is the only version of the file read and written.
const APIVersion = "config.doorman.io/v1alpha1"

// The kinds, one per binary.
const (
	ControlPlaneKind = "ControlPlaneConfiguration"
	NodeAgentKind    = "NodeAgentConfiguration"
)

// Flags that are never fields: the file's own flags, and --version, an
// action rather than a setting.
var alwaysExcluded = []string{"config", "write-config-to", "version"}

// File is the configuration file of one binary's flag set: Register adds
// --config and --write-config-to, Load applies the file once the command
// line is parsed.
type File struct {
	fs      *flag.FlagSet
	kind    string
	exclude []string
	path    *string
	writeTo *string
}

// Register adds --config and --write-config-to to fs. exclude names the
// binary's flags, beyond --config, --write-config-to and --version, that
// are command-line only (actions such as --cleanup).
func Register(fs *flag.FlagSet, kind string, exclude ...string) *File {
	return &File{
		fs: fs, kind: kind, exclude: append(slices.Clone(alwaysExcluded), exclude...),
		path: fs.String("config", "", "configuration file (YAML, apiVersion "+APIVersion+", kind "+kind+
			"): one field per flag, named by the flag in lowerCamelCase; flags given on the command line override it"),
		writeTo: fs.String("write-config-to", "", "write the effective configuration (defaults, then --config, then the command line) to this file in the --config format and exit"),
	}
}

// WriteTo is the file --write-config-to names ("" = none).
func (f *File) WriteTo() string { return *f.writeTo }

// Load reads the file --config names, if any, into every flag of the set
// not given on the command line, and returns the effective configuration.
// Call it after the flag set is parsed.
func (f *File) Load() (*Effective, error) {
	if *f.path != "" {
		data, err := os.ReadFile(*f.path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := f.Apply(data); err != nil {
			return nil, fmt.Errorf("config file %s: %w", *f.path, err)
		}
	}
	return f.Effective(), nil
}

// Apply sets every field of data on its flag, unless the command line set
// that flag. An unknown field, a wrong apiVersion or kind, or a value the
// flag refuses is an error that names the field.
func (f *File) Apply(data []byte) error {
	doc, err := decode(data)
	if err != nil {
		return err
	}
	if err := f.checkHeader(doc); err != nil {
		return err
	}
	onCommandLine := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { onCommandLine[fl.Name] = true })
	var errs []error
	for _, field := range sortedKeys(doc) {
		if field == "apiVersion" || field == "kind" {
			continue
		}
		if err := f.set(field, doc[field], onCommandLine); err != nil {
			errs = append(errs, fmt.Errorf("field %s: %w", field, err))
		}
	}
	return errors.Join(errs...)
}

func (f *File) checkHeader(doc map[string]any) error {
	if v, _ := doc["apiVersion"].(string); v != APIVersion {
		return fmt.Errorf("apiVersion %q: want %s", fmtAny(doc["apiVersion"]), APIVersion)
	}
	if k, _ := doc["kind"].(string); k != f.kind {
		return fmt.Errorf("kind %q: want %s", fmtAny(doc["kind"]), f.kind)
	}
	return nil
}

func (f *File) set(field string, value any, onCommandLine map[string]bool) error {
	name := f.flagOf(field)
	if name == "" {
		return errors.New("unknown field")
	}
	s, err := flagText(value)
	if err != nil {
		return err
	}
	if onCommandLine[name] {
		return nil
	}
	if err := f.fs.Set(name, s); err != nil {
		return fmt.Errorf("invalid value %q: %w", s, err)
	}
	return nil
}

// flagOf is the flag a field stands for ("" = none).
func (f *File) flagOf(field string) string {
	var name string
	f.fs.VisitAll(func(fl *flag.Flag) {
		if FieldName(fl.Name) == field && !slices.Contains(f.exclude, fl.Name) {
			name = fl.Name
		}
	})
	return name
}

// FieldName is a flag's field in the file: its name in lowerCamelCase.
func FieldName(flagName string) string {
	parts := strings.Split(flagName, "-")
	for i := 1; i < len(parts); i++ {
		if p := parts[i]; p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// Excluded reports whether flagName is command-line only in this file.
func (f *File) Excluded(flagName string) bool { return slices.Contains(f.exclude, flagName) }

// decode reads a YAML document into a map whose numbers keep their text.
func decode(data []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a YAML mapping: %w", err)
	}
	if doc == nil {
		return nil, errors.New("empty document: want apiVersion " + APIVersion)
	}
	return doc, nil
}

// flagText is a value of the file as a flag takes it on the command line:
// a list is joined with commas.
func flagText(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case json.Number:
		return v.String(), nil
	case []any:
		items := make([]string, len(v))
		for i, item := range v {
			s, err := flagText(item)
			if err != nil {
				return "", fmt.Errorf("item %d: %w", i, err)
			}
			if _, nested := item.([]any); nested {
				return "", fmt.Errorf("item %d: a list in a list", i)
			}
			items[i] = s
		}
		return strings.Join(items, ","), nil
	case nil:
		return "", errors.New("no value (null)")
	}
	return "", fmt.Errorf("a %T, want a string, number, boolean or list", v)
}

func fmtAny(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Effective is a binary's configuration after defaults, file and command
// line.
type Effective struct {
	Kind string
	// Path is the file read ("" = none).
	Path string
	// Fields in name order.
	Fields []Field
}

// A Field is one setting of the effective configuration.
type Field struct {
	Name string // lowerCamelCase, as in the file
	Flag string // the flag's name
	// Value is typed as in the file: bool, a number, or a string
	// (durations as "5m0s").
	Value any
}

// Effective returns the configuration the flag set holds now.
func (f *File) Effective() *Effective {
	e := &Effective{Kind: f.kind, Path: *f.path}
	f.fs.VisitAll(func(fl *flag.Flag) {
		if !f.Excluded(fl.Name) {
			e.Fields = append(e.Fields, Field{Name: FieldName(fl.Name), Flag: fl.Name, Value: typed(fl.Value)})
		}
	})
	slices.SortFunc(e.Fields, func(a, b Field) int { return strings.Compare(a.Name, b.Name) })
	return e
}

// typed is a flag's value as the file writes it: bools and numbers as
// such, everything else (durations included) as its flag text.
func typed(v flag.Value) any {
	g, ok := v.(flag.Getter)
	if !ok {
		return v.String()
	}
	switch x := g.Get().(type) {
	case bool, int, int64, uint, uint64, float64:
		return x
	case time.Duration:
		return x.String()
	}
	return v.String()
}

// YAML is the effective configuration as a file Load reads back.
func (e *Effective) YAML() ([]byte, error) {
	fields := make(map[string]any, len(e.Fields))
	for _, f := range e.Fields {
		fields[f.Name] = f.Value
	}
	body, err := yaml.Marshal(fields)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("apiVersion: %s\nkind: %s\n", APIVersion, e.Kind)
	return append([]byte(head), body...), nil
}

// Strings is every field's value as a flag takes it on the command line.
func (e *Effective) Strings() map[string]string {
	out := make(map[string]string, len(e.Fields))
	for _, f := range e.Fields {
		out[f.Name] = fmt.Sprint(f.Value)
	}
	return out
}

// Write writes the effective configuration to path, as
// --write-config-to asks.
func (e *Effective) Write(path string) error {
	data, err := e.YAML()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// KeyValues is the effective configuration as hclog key/value pairs, for
// logging it on one line: the file, then every field. No flag of either
// binary holds a secret (tokens and keys are named by file or Secret, never
// given), so every value is logged.
func (e *Effective) KeyValues() []any {
	kv := []any{"kind", e.Kind, "file", e.Path}
	for _, f := range e.Fields {
		kv = append(kv, f.Name, f.Value)
	}
	return kv
}
