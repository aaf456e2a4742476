package ociindex_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushPlatformImage pushes a tiny image for os/arch by digest, as a Kaniko
// build with --digest-file would, and returns "REPO@sha256:…".
func pushPlatformImage(repo, os, arch string) string {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: os, Architecture: arch, RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		log.Fatal(err)
	}
	h, _ := img.Digest()
	ref, _ := name.NewDigest(repo + "@" + h.String())
	if err := remote.Write(ref, img); err != nil {
		log.Fatal(err)
	}
	return ref.String()
}

func ExampleCreate() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"

	amd64 := pushPlatformImage(repo, "linux", "amd64")
	arm64 := pushPlatformImage(repo, "linux", "arm64")

	var sources []ociindex.Source
	for _, s := range []string{arm64 + "=linux/arm64", amd64 + "=linux/amd64"} {
		src, err := ociindex.ParseSource(s)
		if err != nil {
			log.Fatal(err)
		}
		sources = append(sources, src)
	}
	tag, _ := name.NewTag(repo + ":v1")
	ctx := context.Background()
	res, err := ociindex.Create(ctx, []name.Tag{tag}, sources,
		ociindex.WithRequirePlatforms(v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Digest())
	for _, c := range res.Index.Children() {
		fmt.Println(c.Descriptor.Platform)
	}
	fmt.Println("updated:", res.Tags[0].Updated)

	// Running it again changes nothing.
	again, err := ociindex.Create(ctx, []name.Tag{tag}, sources)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("updated:", again.Tags[0].Updated)
	// Output:
	// sha256:710285e76ec4df6f02cc840cd5969f27be2eb04ee6c03393342f006f01ecea39
	// linux/amd64
	// linux/arm64
	// updated: true
	// updated: false
}

func ExampleInspect() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/app"

	var sources []ociindex.Source
	for _, arch := range []string{"amd64", "arm64", "s390x"} {
		src, _ := ociindex.ParseSource(pushPlatformImage(repo, "linux", arch))
		sources = append(sources, src)
	}
	tag, _ := name.NewTag(repo + ":multi")
	ctx := context.Background()
	if _, err := ociindex.Create(ctx, []name.Tag{tag}, sources); err != nil {
		log.Fatal(err)
	}

	s, err := ociindex.Inspect(ctx, tag)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.MediaType)
	for _, m := range s.Manifests {
		fmt.Println(m.Platform, m.MediaType, m.Size)
	}
	// Output:
	// application/vnd.oci.image.index.v1+json
	// linux/amd64 application/vnd.oci.image.manifest.v1+json 248
	// linux/arm64 application/vnd.oci.image.manifest.v1+json 248
	// linux/s390x application/vnd.oci.image.manifest.v1+json 248
}
