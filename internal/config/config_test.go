package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// settings is a flag set of every kind the binaries use.
type settings struct {
	fs       *flag.FlagSet
	file     *File
	maxPer   *int
	qps      *float64
	liberal  *bool
	resync   *time.Duration
	listen   *string
	sans     *string
	capacity *uint64
}

func newSettings(t *testing.T) *settings {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	s := &settings{
		fs:       fs,
		maxPer:   fs.Int("conntrack-max-per-core", 32768, ""),
		qps:      fs.Float64("token-review-qps", 50, ""),
		liberal:  fs.Bool("conntrack-tcp-be-liberal", false, ""),
		resync:   fs.Duration("resync-period", 5*time.Minute, ""),
		listen:   fs.String("health-listen", ":10256", ""),
		sans:     fs.String("tls-san", "", ""),
		capacity: fs.Uint64("capacity", 7, ""),
	}
	fs.Bool("cleanup", false, "")
	fs.Bool("version", false, "")
	s.file = Register(fs, NodeAgentKind, "cleanup")
	return s
}

func (s *settings) load(t *testing.T, file string, args ...string) (*Effective, error) {
	t.Helper()
	if file != "" {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config="+path)
	}
	if err := s.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s.file.Load()
}

const header = "apiVersion: config.doorman.io/v1alpha1\nkind: NodeAgentConfiguration\n"

func TestFieldName(t *testing.T) {
	for flagName, want := range map[string]string{
		"conntrack-max-per-core": "conntrackMaxPerCore",
		"netns":                  "netns",
		"metrics-bind-address":   "metricsBindAddress",
		"token-cache-ttl":        "tokenCacheTtl",
	} {
		if got := FieldName(flagName); got != want {
			t.Errorf("FieldName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	s := newSettings(t)
	_, err := s.load(t, header+`
conntrackMaxPerCore: 100
tokenReviewQps: 2.5
conntrackTcpBeLiberal: true
resyncPeriod: 1m
healthListen: ":1"
tlsSan: [a.example, 10.0.0.1]
`, "--conntrack-max-per-core=7", "--health-listen=:2")
	if err != nil {
		t.Fatal(err)
	}
	got := []any{*s.maxPer, *s.qps, *s.liberal, *s.resync, *s.listen, *s.sans, *s.capacity}
	// The command line wins; the file beats the defaults; a field the
	// file leaves out keeps its default.
	want := []any{7, 2.5, true, time.Minute, ":2", "a.example,10.0.0.1", uint64(7)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

func TestNoFile(t *testing.T) {
	s := newSettings(t)
	e, err := s.load(t, "", "--resync-period=1s")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"capacity": "7", "conntrackMaxPerCore": "32768", "conntrackTcpBeLiberal": "false", "healthListen": ":10256",
		"resyncPeriod": "1s", "tlsSan": "", "tokenReviewQps": "50",
	}
	if diff := cmp.Diff(want, e.Strings()); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	if e.Path != "" || e.Kind != NodeAgentKind {
		t.Errorf("path %q kind %q, want none and %s", e.Path, e.Kind, NodeAgentKind)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown field", header + "conntrackMax: 1\n", "field conntrackMax: unknown field"},
		{"excluded flag", header + "cleanup: true\n", "field cleanup: unknown field"},
		{"the file's own flag", header + "config: /x\n", "field config: unknown field"},
		{"version", header + "version: true\n", "field version: unknown field"},
		{"wrong apiVersion", "apiVersion: v1\nkind: NodeAgentConfiguration\n", `apiVersion "v1": want config.doorman.io/v1alpha1`},
		{"no apiVersion", "kind: NodeAgentConfiguration\n", `apiVersion "": want config.doorman.io/v1alpha1`},
		{"wrong kind", "apiVersion: config.doorman.io/v1alpha1\nkind: KubeProxyConfiguration\n", `kind "KubeProxyConfiguration": want NodeAgentConfiguration`},
		{"refused number", header + "conntrackMaxPerCore: x\n", `field conntrackMaxPerCore: invalid value "x": parse error`},
		{"refused duration", header + "resyncPeriod: 5\n", `field resyncPeriod: invalid value "5": parse error`},
		{"refused bool", header + "conntrackTcpBeLiberal: 3\n", `field conntrackTcpBeLiberal: invalid value "3": parse error`},
		{"negative unsigned", header + "capacity: -1\n", `field capacity: invalid value "-1": parse error`},
		{"null", header + "healthListen:\n", "field healthListen: no value (null)"},
		{"mapping", header + "healthListen: {a: 1}\n", "field healthListen: a map[string]interface {}"},
		{"duplicate", header + "healthListen: a\nhealthListen: b\n", `duplicate`},
		{"not a mapping", "- a\n", "not a YAML mapping"},
		{"empty", "# nothing\n", "empty document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSettings(t)
			_, err := s.load(t, tc.file)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "config.yaml") {
				t.Errorf("error %v does not name the file", err)
			}
		})
	}
}

// A field set on the command line is not read from the file, yet a bad
// value there is still an error: the file must be right on its own.
func TestBadValueUnderCommandLine(t *testing.T) {
	s := newSettings(t)
	_, err := s.load(t, header+"conntrackMaxPerCore: [[1]]\n", "--conntrack-max-per-core=1")
	if err == nil || !strings.Contains(err.Error(), "field conntrackMaxPerCore") {
		t.Fatalf("error %v, want one naming conntrackMaxPerCore", err)
	}
}

func TestRoundTrip(t *testing.T) {
	s := newSettings(t)
	first, err := s.load(t, header+"tlsSan: [a, b]\nhealthListen: \"true\"\n",
		"--resync-period=90s", "--token-review-qps=0.25", "--conntrack-tcp-be-liberal", "--capacity=18446744073709551615")
	if err != nil {
		t.Fatal(err)
	}
	text, err := first.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), header) {
		t.Errorf("written file starts %q, want %q", text, header)
	}
	// Read back into a fresh set: every field of the file, no flag given.
	again := newSettings(t)
	second, err := again.load(t, string(text))
	if err != nil {
		t.Fatalf("read back:\n%s\n%v", text, err)
	}
	if diff := cmp.Diff(first.Strings(), second.Strings()); diff != "" {
		t.Errorf("read back (-written +read):\n%s", diff)
	}
	if len(second.Fields) != 7 {
		t.Errorf("%d fields written, want 7:\n%s", len(second.Fields), text)
	}
}

func TestWrite(t *testing.T) {
	s := newSettings(t)
	path := filepath.Join(t.TempDir(), "out.yaml")
	e, err := s.load(t, "", "--write-config-to="+path, "--conntrack-max-per-core=9")
	if err != nil {
		t.Fatal(err)
	}
	if s.file.WriteTo() != path {
		t.Fatalf("WriteTo() = %q, want %q", s.file.WriteTo(), path)
	}
	if err := e.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := header + `capacity: 7
conntrackMaxPerCore: 9
conntrackTcpBeLiberal: false
healthListen: :10256
resyncPeriod: 5m0s
tlsSan: ""
tokenReviewQps: 50
`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("written (-want +got):\n%s", diff)
	}
}

func TestKeyValues(t *testing.T) {
	s := newSettings(t)
	e, err := s.load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	kv := e.KeyValues()
	want := []any{"kind", NodeAgentKind, "file", "", "capacity", uint64(7), "conntrackMaxPerCore", 32768,
		"conntrackTcpBeLiberal", false, "healthListen", ":10256", "resyncPeriod", "5m0s", "tlsSan", "", "tokenReviewQps", 50.0}
	if diff := cmp.Diff(want, kv); diff != "" {
		t.Errorf("key/values (-want +got):\n%s", diff)
	}
}
