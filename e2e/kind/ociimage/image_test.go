package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// file is what a test sees of one path in an image's flattened filesystem.
type file struct {
	Type     byte
	Mode     int64
	UID, GID int
	ModTime  time.Time
	Linkname string
	Content  string
}

var epoch = time.Unix(0, 0).UTC()

func TestWriteImage(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "server", "\x7fELF pretend binary", 0o755)
	conf := writeFile(t, dir, "server.conf", "listen :8080\n", 0o600)
	rootfs := filepath.Join(dir, "base.tar.gz")
	writeGzipTar(t, rootfs, map[string]string{"etc/os-release": "ID=test\n", "bin/sh": "#!shell"})

	tests := []struct {
		name       string
		args       []string
		wantConfig v1.Config
		wantLayers int
		wantFiles  map[string]file
	}{{
		name: "binary on an empty base",
		args: []string{
			"-name", "registry.k8s.io/kube-apiserver:v1.36.3",
			"-file", bin + ":/usr/local/bin/kube-apiserver",
			"-entrypoint", "/usr/local/bin/kube-apiserver",
		},
		wantConfig: v1.Config{
			Entrypoint: []string{"/usr/local/bin/kube-apiserver"},
			Env:        []string{defaultPath},
		},
		wantLayers: 1,
		wantFiles: map[string]file{
			"usr":                          dirAt(0o755),
			"usr/local":                    dirAt(0o755),
			"usr/local/bin":                dirAt(0o755),
			"usr/local/bin/kube-apiserver": {Type: tar.TypeReg, Mode: 0o755, ModTime: epoch, Content: "\x7fELF pretend binary"},
		},
	}, {
		name: "modes, directories, links, user, env and a base layer",
		args: []string{
			"-name", "doorman.local/controlplane:e2e",
			"-rootfs", rootfs,
			"-file", bin + ":/controlplane",
			"-file", conf + ":/etc/server/server.conf:0644",
			"-dir", "/tmp:1777",
			"-dir", "/var/lib/app:0700",
			"-symlink", "/controlplane-2:controlplane",
			"-entrypoint", "/controlplane", "-entrypoint", "--serve",
			"-cmd", "pause",
			"-env", "PATH=/bin", "-env", "MODE=test",
			"-user", "65532:65532",
			"-workdir", "/var/lib/app",
			"-created", "2026-01-02T03:04:05Z",
		},
		wantConfig: v1.Config{
			Entrypoint: []string{"/controlplane", "--serve"},
			Cmd:        []string{"pause"},
			Env:        []string{"PATH=/bin", "MODE=test"},
			User:       "65532:65532",
			WorkingDir: "/var/lib/app",
		},
		wantLayers: 2,
		wantFiles: map[string]file{
			"bin/sh":                 {Type: tar.TypeReg, Mode: 0o755, ModTime: epoch, Content: "#!shell"},
			"etc/os-release":         {Type: tar.TypeReg, Mode: 0o755, ModTime: epoch, Content: "ID=test\n"},
			"controlplane":           {Type: tar.TypeReg, Mode: 0o755, ModTime: at("2026-01-02T03:04:05Z"), Content: "\x7fELF pretend binary"},
			"controlplane-2":         {Type: tar.TypeSymlink, Mode: 0o777, ModTime: at("2026-01-02T03:04:05Z"), Linkname: "controlplane"},
			"etc":                    {Type: tar.TypeDir, Mode: 0o755, ModTime: at("2026-01-02T03:04:05Z")},
			"etc/server":             {Type: tar.TypeDir, Mode: 0o755, ModTime: at("2026-01-02T03:04:05Z")},
			"etc/server/server.conf": {Type: tar.TypeReg, Mode: 0o644, ModTime: at("2026-01-02T03:04:05Z"), Content: "listen :8080\n"},
			"tmp":                    {Type: tar.TypeDir, Mode: 0o1777, ModTime: at("2026-01-02T03:04:05Z")},
			"var":                    {Type: tar.TypeDir, Mode: 0o755, ModTime: at("2026-01-02T03:04:05Z")},
			"var/lib":                {Type: tar.TypeDir, Mode: 0o755, ModTime: at("2026-01-02T03:04:05Z")},
			"var/lib/app":            {Type: tar.TypeDir, Mode: 0o700, ModTime: at("2026-01-02T03:04:05Z")},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "image.tar")
			if err := run(append(tt.args, "-o", out), io.Discard); err != nil {
				t.Fatalf("run: %v", err)
			}
			opts, err := parseArgs(append(tt.args, "-o", out), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tag, err := name.NewTag(opts.name)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(out, &tag)
			if err != nil {
				t.Fatalf("read back %s as %s: %v", out, tag, err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantConfig, cf.Config); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			got := struct {
				OS, Architecture string
				Created          time.Time
				Layers, History  int
			}{cf.OS, cf.Architecture, cf.Created.UTC(), len(cf.RootFS.DiffIDs), len(cf.History)}
			want := got
			want.OS, want.Architecture, want.Created = "linux", "amd64", opts.spec.created
			want.Layers, want.History = tt.wantLayers, tt.wantLayers
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config file (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFiles, filesOf(t, img)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(out) })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{opts.name}, m[0].RepoTags); diff != "" {
				t.Errorf("RepoTags (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriteImageDeterministic: the tarball depends on the inputs' contents
// and the flags, not on when or where the inputs were made.
func TestWriteImageDeterministic(t *testing.T) {
	build := func(content string, mtime time.Time) []byte {
		dir := t.TempDir()
		bin := writeFile(t, dir, "pause", content, 0o755)
		if err := os.Chtimes(bin, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "out.tar")
		args := []string{"-name", "registry.k8s.io/pause:3.10.2", "-o", out, "-file", bin + ":/pause", "-entrypoint", "/pause"}
		if err := run(args, io.Discard); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := build("pause binary", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	b := build("pause binary", time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC))
	if !bytes.Equal(a, b) {
		t.Errorf("same content, different mtime and directory: tarballs differ (%d and %d bytes)", len(a), len(b))
	}
	c := build("another pause binary", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	if bytes.Equal(a, c) {
		t.Error("different content gave the same tarball")
	}
}

func TestArgsRejected(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "bin", "x", 0o755)
	base := []string{"-name", "example.test/img:1", "-o", filepath.Join(dir, "out.tar")}
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no name", []string{"-o", "x.tar", "-file", bin + ":/bin"}, "-name and -o are required"},
		{"bad tag", []string{"-name", "Upper/Case:1", "-o", filepath.Join(dir, "o.tar"), "-file", bin + ":/bin"}, `image name "Upper/Case:1"`},
		{"file without destination", append(base, "-file", bin), "want SRC:DST[:MODE]"},
		{"relative destination", append(base, "-file", bin+":usr/bin/x"), `path "usr/bin/x" in the image must be absolute`},
		{"bad mode", append(base, "-file", bin+":/x:0999"), `mode "0999"`},
		{"mode too large", append(base, "-dir", "/x:17777"), `mode "17777"`},
		{"missing source", append(base, "-file", filepath.Join(dir, "nope")+":/x"), "nope"},
		{"source is a directory", append(base, "-file", dir+":/x"), "not a regular file"},
		{"two claim one path", append(base, "-file", bin+":/x", "-symlink", "/x:y"), "both claim /x"},
		{"file under a file", append(base, "-file", bin+":/x", "-file", bin+":/x/y"), "needs directory /x"},
		{"bad env", append(base, "-file", bin+":/x", "-env", "NOEQUALS"), `env "NOEQUALS"`},
		{"relative workdir", append(base, "-file", bin+":/x", "-workdir", "app"), `-workdir "app"`},
		{"empty image", base, "nothing to put in the image"},
		{"missing rootfs", append(base, "-rootfs", filepath.Join(dir, "none.tar")), "rootfs " + filepath.Join(dir, "none.tar")},
		{"bad created", append(base, "-file", bin+":/x", "-created", "yesterday"), `-created "yesterday"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask would narrow WriteFile's mode
		t.Fatal(err)
	}
	return p
}

// writeGzipTar writes a gzip tarball of regular 0755 files, mtime 0.
func writeGzipTar(t *testing.T, p string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for n, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(c)), ModTime: epoch}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// filesOf flattens the image's layers as a runtime would and lists them.
func filesOf(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	got := map[string]file{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[hdr.Name] = file{
			Type: hdr.Typeflag, Mode: hdr.Mode, UID: hdr.Uid, GID: hdr.Gid,
			ModTime: hdr.ModTime.UTC(), Linkname: hdr.Linkname, Content: string(b),
		}
	}
	return got
}

func dirAt(mode int64) file { return file{Type: tar.TypeDir, Mode: mode, ModTime: epoch} }

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
