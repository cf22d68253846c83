package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// result names what was written.
type result struct {
	configDigest   v1.Hash // the image id docker and crictl show
	manifestDigest v1.Hash
}

// writeImage builds the image and writes it to o.out, through a temporary
// file so a reader never sees half a tarball.
func writeImage(o options) (result, error) {
	tag, err := name.NewTag(o.name)
	if err != nil {
		return result{}, fmt.Errorf("image name %q: %w", o.name, err)
	}
	img, err := buildImage(o.spec)
	if err != nil {
		return result{}, fmt.Errorf("image %s: %w", o.name, err)
	}
	tmp := o.out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return result{}, fmt.Errorf("image %s: write %s: %w", o.name, tmp, err)
	}
	if err := os.Rename(tmp, o.out); err != nil {
		_ = os.Remove(tmp)
		return result{}, fmt.Errorf("image %s: %w", o.name, err)
	}
	var res result
	if res.configDigest, err = img.ConfigName(); err != nil {
		return result{}, fmt.Errorf("image %s: config digest: %w", o.name, err)
	}
	if res.manifestDigest, err = img.Digest(); err != nil {
		return result{}, fmt.Errorf("image %s: manifest digest: %w", o.name, err)
	}
	return res, nil
}

// buildImage assembles a linux/amd64 image: the rootfs tarballs as base
// layers in order, then one layer holding the files, directories and
// links, then the config.
func buildImage(s spec) (v1.Image, error) {
	entries, err := layerEntries(s)
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 && len(s.rootfs) == 0 {
		return nil, errors.New("nothing to put in the image: give -file, -dir, -symlink or -rootfs")
	}
	created := v1.Time{Time: s.created}
	var adds []mutate.Addendum
	for _, p := range s.rootfs {
		l, err := tarball.LayerFromFile(p)
		if err != nil {
			return nil, fmt.Errorf("rootfs %s: %w", p, err)
		}
		// The history names the file, not its directory, so the image does
		// not depend on where the cache lives.
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{
			Created: created, CreatedBy: "ociimage -rootfs " + filepath.Base(p),
		}})
	}
	if len(entries) > 0 {
		// The layer is a tar stream generated afresh each time the library
		// reads it (digest, diff id, then the write), so no copy of the
		// binaries is staged on disk or held in memory.
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(writeLayer(pw, entries, s.created)) }()
			return pr, nil
		})
		if err != nil {
			return nil, fmt.Errorf("files layer: %w", err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{
			Created: created, CreatedBy: "ociimage " + describe(entries),
		}})
	}
	img, err := mutate.Append(empty.Image, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = created
	cf.Config = v1.Config{
		Entrypoint: s.entrypoint,
		Cmd:        s.cmd,
		Env:        s.env,
		User:       s.user,
		WorkingDir: s.workdir,
	}
	return mutate.ConfigFile(img, cf)
}

// entry is one tar header of the files layer, with where its content
// comes from for a regular file.
type entry struct {
	hdr tar.Header
	src string
}

// layerEntries lists the files layer's entries sorted by path, with every
// parent directory present (0755 unless given), or fails on two entries
// claiming one path.
func layerEntries(s spec) ([]entry, error) {
	byPath := map[string]entry{}
	origin := map[string]string{} // path → the flag that claimed it, for errors
	claim := func(p, what string, e entry) error {
		if prev, ok := origin[p]; ok {
			return fmt.Errorf("%s and %s both claim %s", prev, what, p)
		}
		byPath[p], origin[p] = e, what
		return nil
	}
	for _, d := range s.dirs {
		e := entry{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: d.mode}}
		if err := claim(d.dst, "dir "+d.dst, e); err != nil {
			return nil, err
		}
	}
	for _, f := range s.files {
		fi, err := os.Stat(f.src)
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.src, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("file %s: not a regular file", f.src)
		}
		mode := int64(fi.Mode().Perm())
		if f.hasMode {
			mode = f.mode
		}
		e := entry{hdr: tar.Header{Typeflag: tar.TypeReg, Mode: mode, Size: fi.Size()}, src: f.src}
		if err := claim(f.dst, "file "+f.src, e); err != nil {
			return nil, err
		}
	}
	for _, l := range s.symlinks {
		e := entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: l.target}}
		if err := claim(l.dst, "symlink "+l.dst, e); err != nil {
			return nil, err
		}
	}
	for p := range origin {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if e, ok := byPath[d]; ok {
				if e.hdr.Typeflag != tar.TypeDir {
					return nil, fmt.Errorf("%s needs directory %s, which %s makes something else", origin[p], d, origin[d])
				}
				continue
			}
			byPath[d] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}}
		}
	}
	out := make([]entry, 0, len(byPath))
	for p, e := range byPath {
		// Layer paths are relative to the root; directories end in '/'.
		e.hdr.Name = strings.TrimPrefix(p, "/")
		if e.hdr.Typeflag == tar.TypeDir {
			e.hdr.Name += "/"
		}
		out = append(out, e)
	}
	// A parent's path is a prefix of its children's, so it sorts first.
	sort.Slice(out, func(i, j int) bool { return out[i].hdr.Name < out[j].hdr.Name })
	return out, nil
}

// writeLayer writes the entries as an uncompressed tar: owner root,
// every mtime the image's creation time, so the bytes depend only on the
// files' contents and the flags.
func writeLayer(w io.Writer, entries []entry, mtime time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := e.hdr
		hdr.ModTime = mtime
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := copyFile(tw, e.src, hdr.Size); err != nil {
			return fmt.Errorf("layer entry %s: %w", hdr.Name, err)
		}
	}
	return tw.Close()
}

// copyFile copies exactly size bytes of src, failing when the file changed
// size since it was listed (a binary rebuilt under our feet).
func copyFile(w io.Writer, src string, size int64) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	n, err := io.Copy(w, io.LimitReader(f, size+1))
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if n != size {
		return fmt.Errorf("%s changed size while being copied (%d bytes, expected %d)", src, n, size)
	}
	return nil
}

// describe is the files layer's history line: what it holds, not where it
// came from.
func describe(entries []entry) string {
	var names []string
	for _, e := range entries {
		if e.hdr.Typeflag != tar.TypeDir {
			names = append(names, "/"+e.hdr.Name)
		}
	}
	if len(names) == 0 {
		return "directories"
	}
	return strings.Join(names, " ")
}
