package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes one build.
type Info struct {
	// Version is the main module's version: a tag (v0.4.0), a
	// pseudo-version (v0.0.0-20260102150405-abcdef123456, +dirty when the
	// tree was modified), or "(devel)" when the go command recorded none.
	Version string
	// Revision is the VCS commit; "" when unknown.
	Revision string
	// Time is the commit's time (RFC 3339); "" when unknown.
	Time string
	// Modified: the tree had changes not committed.
	Modified  bool
	GoVersion string
}

// Get returns this binary's build information.
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return FromBuildInfo(bi)
})

// FromBuildInfo reads what the go command recorded; bi may be nil.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: "(devel)", GoVersion: runtime.Version()}
	if bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// ShortRevision is the revision's first 12 hex digits, "-dirty" appended
// when the tree was modified; "unknown" when not recorded.
func (i Info) ShortRevision() string {
	if i.Revision == "" {
		return "unknown"
	}
	r := i.Revision
	if len(r) > 12 {
		r = r[:12]
	}
	if i.Modified {
		r += "-dirty"
	}
	return r
}

// String is the build in one line, e.g.
// "v0.4.0 (commit 5f854596d506 of 2026-12-06T00:51:42Z, go1.26.8, protocol 1)".
func (i Info) String() string {
	commit := "commit " + i.ShortRevision()
	if i.Time != "" {
		commit += " of " + i.Time
	}
	return fmt.Sprintf("%s (%s, %s, protocol %d)", i.Version, commit, i.GoVersion, Protocol)
}

// Line is what --version prints for binary ("controlplane", "nodeagent").
func Line(binary string) string {
	return "doorman " + binary + " " + Get().String()
}
