// Package version says which build of doorman is running and which
// version of the agent–control plane stream it speaks.
//
// The build is read from what the go command records in every binary
// (runtime/debug.ReadBuildInfo): the main module's version (a tag such as
// v0.4.0, or a pseudo-version naming the commit, with +dirty for a
// modified tree), the VCS revision and commit time, and the Go version.
// Nothing is set with -ldflags -X: the go command computes these from the
// tree it actually compiles, so they cannot go stale, and the builds need
// no script of their own. The repository's builds pass -buildvcs=true so
// that a GOFLAGS=-buildvcs=false in the environment cannot drop them; a
// build from a tree without .git says "(devel)" and "unknown", which is
// true.
//
// Protocol is the stream's compatibility version, carried in the agent's
// Hello; Range.Check is the skew rule the control plane applies to it (see
// Protocol). The package is pure apart from reading the build information
// once and must not import either binary's packages.
package version
