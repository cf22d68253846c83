// Package repocheck holds tests of the repository itself, run with the
// unit tests:
//
//   - every link in the tracked markdown files resolves: a relative link
//     names a file or directory of the repository, and an anchor names a
//     heading of the page it points to (links to other sites are not
//     fetched, since the tests run offline; they must only be well-formed);
//   - no tracked file is a large binary (build outputs are never
//     committed).
package repocheck
