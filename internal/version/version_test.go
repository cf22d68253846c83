package version

import (
	"errors"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want Info
	}{
		{"none", nil, Info{Version: "(devel)", GoVersion: "go-runtime"}},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			Info{Version: "(devel)", GoVersion: "go1.26.8"}},
		{"tagged", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.4.0"}, Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs.revision", Value: "5f854596d50691151d307208b5173de5807086e3"},
			{Key: "vcs.time", Value: "2026-12-06T00:51:42Z"},
			{Key: "vcs.modified", Value: "false"},
		}}, Info{Version: "v0.4.0", Revision: "5f854596d50691151d307208b5173de5807086e3", Time: "2026-12-06T00:51:42Z", GoVersion: "go1.26.8"}},
		{"modified", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206005142-5f854596d506+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "5f854596d50691151d307208b5173de5807086e3"},
			{Key: "vcs.modified", Value: "true"},
		}}, Info{Version: "v0.0.0-20261206005142-5f854596d506+dirty", Revision: "5f854596d50691151d307208b5173de5807086e3", Modified: true, GoVersion: "go1.26.8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := FromBuildInfo(tc.bi)
			if tc.bi == nil {
				got.GoVersion = "go-runtime" // runtime.Version(), whatever it is
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("FromBuildInfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want string
	}{
		{Info{Version: "(devel)", GoVersion: "go1.26.8"}, "(devel) (commit unknown, go1.26.8, protocol 3)"},
		{Info{Version: "v0.4.0", Revision: "5f854596d50691151d307208b5173de5807086e3", Time: "2026-12-06T00:51:42Z", GoVersion: "go1.26.8"},
			"v0.4.0 (commit 5f854596d506 of 2026-12-06T00:51:42Z, go1.26.8, protocol 3)"},
		{Info{Version: "v0.4.0+dirty", Revision: "5f854596d50691151d307208b5173de5807086e3", Modified: true, GoVersion: "go1.26.8"},
			"v0.4.0+dirty (commit 5f854596d506-dirty, go1.26.8, protocol 3)"},
	} {
		if got := tc.info.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.info, got, tc.want)
		}
	}
}

func TestLine(t *testing.T) {
	got := Line("nodeagent")
	if want := "doorman nodeagent " + Get().String(); got != want {
		t.Errorf("Line = %q, want %q", got, want)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name     string
		served   Range
		protocol uint32
		// want: "" accepted, else a text the refusal must contain.
		want []string
	}{
		{"same protocol", Range{1, 1}, 1, nil},
		{"agent without the field speaks 1", Range{1, 1}, 0, nil},
		{"agent without the field, 1 no longer served", Range{2, 3}, 0,
			[]string{"node n1 (a build from before agents said their version) speaks stream protocol 1", "serves agent protocols 2 to 3", "upgrade the agent"}},
		{"one protocol older, still served", Range{1, 2}, 1, nil},
		{"older than served", Range{2, 2}, 1, []string{"speaks stream protocol 1, older than", "upgrade the agent"}},
		{"newer than served", Range{1, 1}, 2, []string{"speaks stream protocol 2, newer than", "upgrade the control plane first"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.served.Check("n1", tc.protocol, "")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check: %v, want accepted", err)
				}
				return
			}
			var skew *SkewError
			if !errors.As(err, &skew) {
				t.Fatalf("Check: %v, want a *SkewError", err)
			}
			for _, w := range append(tc.want, Get().String()) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check: %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestServed(t *testing.T) {
	// The protocol this build speaks is one its control plane serves: an
	// agent and a control plane of the same build always work together.
	if err := Served.Check("n1", Protocol, Get().String()); err != nil {
		t.Fatal(err)
	}
}
