// Package imagefs builds small deterministic images from a list of files
// and reads files back from an image's filesystem: the base images of the
// end-to-end suite, and the images the tests of the main module push to a
// registry and inspect. go-containerregistry does the image work; this
// package only turns a file list into a layer and walks a flattened
// filesystem.
package imagefs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every file in the layers.
var epoch = time.Unix(0, 0).UTC()

// File is one entry of a layer.
type File struct {
	// Path is relative to the root ("bin/busybox").
	Path string
	// Mode holds the permission bits and the type: 0 or fs.ModeDir or
	// fs.ModeSymlink.
	Mode fs.FileMode
	// Body is a regular file's content; Source names a host file to copy
	// instead; Link is a symlink's target.
	Body   []byte
	Source string
	Link   string
}

// Layer tars files (sorted by path, owned by root, at the epoch) into a
// gzip-compressed layer. Parent directories must be listed before their
// children's paths sort, which sorting guarantees.
func Layer(files []File) (v1.Layer, error) {
	files = append([]File(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for _, f := range files {
		p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
		if p == "" || seen[p] {
			return nil, fmt.Errorf("layer: empty or duplicate path %q", f.Path)
		}
		seen[p] = true
		hdr := &tar.Header{Name: p, Mode: int64(f.Mode.Perm()), ModTime: epoch, Format: tar.FormatPAX}
		if f.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		body := f.Body
		switch {
		case f.Mode&fs.ModeDir != 0:
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		case f.Mode&fs.ModeSymlink != 0:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			if f.Source != "" {
				b, err := os.ReadFile(f.Source)
				if err != nil {
					return nil, fmt.Errorf("layer: %w", err)
				}
				body = b
			}
			hdr.Size = int64(len(body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", p, err)
		}
		if _, err := tw.Write(body); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed), tarball.WithMediaType(types.OCILayer))
}

// Image makes a single-platform image of layers with the given config.
func Image(plat v1.Platform, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return img, nil
}

// Index makes an OCI index of one image per platform, made by one.
func Index(platforms []v1.Platform, one func(v1.Platform) (v1.Image, error)) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		img, err := one(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	return idx, nil
}

// Walk calls fn for each entry of img's flattened filesystem, in order,
// with a reader of a regular file's content; an error from fn stops the
// walk and is returned.
func Walk(img v1.Image, fn func(h *tar.Header, r io.Reader) error) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the image's filesystem: %w", err)
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// ReadFiles returns the regular files of img's flattened filesystem whose
// paths (relative to the root: "etc/passwd") are in want; a path absent
// from the image is absent from the map.
func ReadFiles(img v1.Image, want ...string) (map[string][]byte, error) {
	got := map[string][]byte{}
	err := Walk(img, func(h *tar.Header, r io.Reader) error {
		p := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if h.Typeflag != tar.TypeReg || !slices.Contains(want, p) {
			return nil
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("reading %s: %w", p, err)
		}
		got[p] = b
		return nil
	})
	return got, err
}
