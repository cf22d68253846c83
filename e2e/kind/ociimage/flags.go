package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"
)

// options is everything one invocation asks for.
type options struct {
	name string // image reference written into the tarball's RepoTags
	out  string // tarball path
	spec spec
}

// spec is what goes into the image: base layers, one layer of files,
// and the runtime config.
type spec struct {
	rootfs     []string // base layer tarballs, bottom first
	files      []fileEntry
	dirs       []dirEntry
	symlinks   []symlinkEntry
	entrypoint []string
	cmd        []string
	env        []string
	user       string
	workdir    string
	created    time.Time
}

// fileEntry copies src from disk to dst in the image. Without an explicit
// mode the source file's permission bits are kept.
type fileEntry struct {
	src     string
	dst     string
	mode    int64 // tar permission bits, 0o7777 at most
	hasMode bool
}

type dirEntry struct {
	dst  string
	mode int64 // tar permission bits
}

type symlinkEntry struct {
	dst    string
	target string
}

// defaultPath is the PATH an image gets unless -env sets one. kubeadm's
// static Pods start the components by bare command name (kube-apiserver,
// etcd), and an image config without PATH leaves the lookup to whatever
// the runtime falls back to.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// parseArgs reads the command line. It returns flag.ErrHelp after
// printing usage for -h.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	var o options
	fset := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.StringVar(&o.name, "name", "", "image reference, e.g. registry.k8s.io/pause:3.10.2 (required)")
	fset.StringVar(&o.out, "o", "", "output tarball (required)")
	fset.StringVar(&o.spec.user, "user", "", "user (and :group) the entrypoint runs as")
	fset.StringVar(&o.spec.workdir, "workdir", "", "working directory (absolute)")
	created := fset.String("created", "1970-01-01T00:00:00Z", "RFC 3339 time used for the config, history and every file's mtime")
	fset.Func("entrypoint", "one entrypoint argument (repeat for more)", func(s string) error {
		o.spec.entrypoint = append(o.spec.entrypoint, s)
		return nil
	})
	fset.Func("cmd", "one default argument (repeat for more)", func(s string) error {
		o.spec.cmd = append(o.spec.cmd, s)
		return nil
	})
	fset.Func("env", "K=V environment entry (repeatable)", func(s string) error {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			return fmt.Errorf("env %q: want K=V", s)
		}
		o.spec.env = append(o.spec.env, s)
		return nil
	})
	fset.Func("file", "SRC:DST[:MODE] file copied into the image, MODE octal (repeatable)", func(s string) error {
		f, err := parseFile(s)
		if err != nil {
			return err
		}
		o.spec.files = append(o.spec.files, f)
		return nil
	})
	fset.Func("dir", "DST[:MODE] empty directory, MODE octal, default 0755 (repeatable)", func(s string) error {
		d, err := parseDir(s)
		if err != nil {
			return err
		}
		o.spec.dirs = append(o.spec.dirs, d)
		return nil
	})
	fset.Func("symlink", "DST:TARGET symbolic link (repeatable)", func(s string) error {
		l, err := parseSymlink(s)
		if err != nil {
			return err
		}
		o.spec.symlinks = append(o.spec.symlinks, l)
		return nil
	})
	fset.Func("rootfs", "tarball (plain or gzip) added as a base layer below the files (repeatable, bottom first)", func(s string) error {
		o.spec.rootfs = append(o.spec.rootfs, s)
		return nil
	})
	if err := fset.Parse(args); err != nil {
		return options{}, err
	}
	if fset.NArg() != 0 {
		return options{}, fmt.Errorf("unexpected arguments %q", fset.Args())
	}
	if o.name == "" || o.out == "" {
		return options{}, errors.New("-name and -o are required")
	}
	t, err := time.Parse(time.RFC3339, *created)
	if err != nil {
		return options{}, fmt.Errorf("-created %q: %w", *created, err)
	}
	o.spec.created = t.UTC()
	if o.spec.workdir != "" && !path.IsAbs(o.spec.workdir) {
		return options{}, fmt.Errorf("-workdir %q: must be absolute", o.spec.workdir)
	}
	if !hasPath(o.spec.env) {
		o.spec.env = append([]string{defaultPath}, o.spec.env...)
	}
	return o, nil
}

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

func parseFile(s string) (fileEntry, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return fileEntry{}, fmt.Errorf("file %q: want SRC:DST[:MODE] (paths cannot contain ':')", s)
	}
	dst, err := imagePath(parts[1])
	if err != nil {
		return fileEntry{}, fmt.Errorf("file %q: %w", s, err)
	}
	f := fileEntry{src: parts[0], dst: dst}
	if len(parts) == 3 {
		if f.mode, err = parseMode(parts[2]); err != nil {
			return fileEntry{}, fmt.Errorf("file %q: %w", s, err)
		}
		f.hasMode = true
	}
	return f, nil
}

func parseDir(s string) (dirEntry, error) {
	p, m, hasMode := strings.Cut(s, ":")
	dst, err := imagePath(p)
	if err != nil {
		return dirEntry{}, fmt.Errorf("dir %q: %w", s, err)
	}
	d := dirEntry{dst: dst, mode: 0o755}
	if hasMode {
		if d.mode, err = parseMode(m); err != nil {
			return dirEntry{}, fmt.Errorf("dir %q: %w", s, err)
		}
	}
	return d, nil
}

func parseSymlink(s string) (symlinkEntry, error) {
	p, target, ok := strings.Cut(s, ":")
	if !ok || target == "" {
		return symlinkEntry{}, fmt.Errorf("symlink %q: want DST:TARGET", s)
	}
	dst, err := imagePath(p)
	if err != nil {
		return symlinkEntry{}, fmt.Errorf("symlink %q: %w", s, err)
	}
	return symlinkEntry{dst: dst, target: target}, nil
}

// imagePath checks an in-image path and returns it clean and absolute.
func imagePath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("path %q in the image must be absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", errors.New("path in the image cannot be /")
	}
	return c, nil
}

// parseMode reads octal permission bits such as 0755 or 1777, as a tar
// header holds them (the sticky and set-id bits are not fs.FileMode's).
func parseMode(s string) (int64, error) {
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal permission bits such as 0755", s)
	}
	return int64(v), nil
}
