package imagefs

import (
	"archive/tar"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type entry struct {
	typ        byte
	mode       int64
	body, link string
	uid, gid   int
	mtime      time.Time
}

func readLayer(t *testing.T, l v1.Layer) (names []string, entries map[string]entry) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries = map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, entries
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		entries[h.Name] = entry{typ: h.Typeflag, mode: h.Mode, body: string(b), link: h.Linkname, uid: h.Uid, gid: h.Gid, mtime: h.ModTime}
	}
}

func TestLayer(t *testing.T) {
	src := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(src, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := []File{
		{Path: "usr/bin/prog", Mode: 0o755, Source: src},
		{Path: "usr", Mode: fs.ModeDir | 0o755},
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "usr/bin", Mode: fs.ModeDir | 0o755},
		{Path: "usr/bin/sh", Mode: fs.ModeSymlink, Link: "/usr/bin/prog"},
		{Path: "/etc/motd", Mode: 0o644, Body: []byte("hi\n")},
	}
	l, err := Layer(files)
	if err != nil {
		t.Fatal(err)
	}
	names, got := readLayer(t, l)
	if want := "etc/motd tmp/ usr/ usr/bin/ usr/bin/prog usr/bin/sh"; strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
	want := map[string]entry{
		"etc/motd":     {typ: tar.TypeReg, mode: 0o644, body: "hi\n"},
		"tmp/":         {typ: tar.TypeDir, mode: 0o1777},
		"usr/":         {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/":     {typ: tar.TypeDir, mode: 0o755},
		"usr/bin/prog": {typ: tar.TypeReg, mode: 0o755, body: "#!/bin/sh\n"},
		"usr/bin/sh":   {typ: tar.TypeSymlink, mode: 0o777, link: "/usr/bin/prog"},
	}
	for n, w := range want {
		g := got[n]
		if !g.mtime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: mtime %v, want the epoch", n, g.mtime)
		}
		g.mtime = time.Time{}
		if g != w {
			t.Errorf("%s: %+v, want %+v", n, g, w)
		}
	}
	mt, err := l.MediaType()
	if err != nil || mt != types.OCILayer {
		t.Errorf("media type %s (%v), want %s", mt, err, types.OCILayer)
	}

	// Deterministic: the same files in another order make the same layer.
	reversed := make([]File, len(files))
	for i, f := range files {
		reversed[len(files)-1-i] = f
	}
	l2, err := Layer(reversed)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := l.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("same files, digests %s and %s", d1, d2)
	}
}

func TestLayerRejects(t *testing.T) {
	for name, files := range map[string][]File{
		"duplicate":      {{Path: "a", Body: []byte("1")}, {Path: "/a", Body: []byte("2")}},
		"empty path":     {{Path: "/"}},
		"missing source": {{Path: "a", Source: "/nonexistent/file"}},
	} {
		if _, err := Layer(files); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestImage(t *testing.T) {
	l, err := Layer([]File{{Path: "a", Body: []byte("a")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, v1.Config{Cmd: []string{"sh"}}, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm" || cf.Variant != "v7" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config %s/%s/%s created %v", cf.OS, cf.Architecture, cf.Variant, cf.Created)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("config %+v, rootfs %+v", cf.Config, cf.RootFS)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	m, err := img.Manifest()
	if err != nil || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("config media type %v (%v)", m.Config.MediaType, err)
	}
}

// TestIndex makes an index of two platforms: an OCI index whose
// descriptors name the platforms, in order; an error names its platform.
func TestIndex(t *testing.T) {
	plats := []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm", Variant: "v7"}}
	idx, err := Index(plats, func(p v1.Platform) (v1.Image, error) {
		l, err := Layer([]File{{Path: "arch", Mode: 0o644, Body: []byte(p.Architecture)}})
		if err != nil {
			return nil, err
		}
		return Image(p, v1.Config{}, l)
	})
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := idx.MediaType(); mt != types.OCIImageIndex {
		t.Errorf("index media type %s", mt)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range m.Manifests {
		got = append(got, d.Platform.String())
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm/v7"}, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
	_, err = Index(plats, func(p v1.Platform) (v1.Image, error) { return nil, errors.New("no image") })
	if err == nil || !strings.Contains(err.Error(), "linux/amd64: no image") {
		t.Errorf("error %v, want one naming linux/amd64", err)
	}
}

// TestReadFiles reads regular files back from a two-layer image: the
// upper layer's content wins, and directories, symlinks and paths not
// asked for are left out; Walk stops at fn's error.
func TestReadFiles(t *testing.T) {
	lower, err := Layer([]File{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/passwd", Mode: 0o644, Body: []byte("old\n")},
		{Path: "etc/group", Mode: 0o644, Body: []byte("g\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	upper, err := Layer([]File{
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/passwd", Mode: 0o644, Body: []byte("new\n")},
		{Path: "etc/link", Mode: fs.ModeSymlink, Link: "/etc/group"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Image(v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Config{}, lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFiles(img, "etc/passwd", "etc/link", "etc", "etc/missing")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]byte{"etc/passwd": []byte("new\n")}, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	n := 0
	if err := Walk(img, func(*tar.Header, io.Reader) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk after an error: %v, %d calls", err, n)
	}
}
