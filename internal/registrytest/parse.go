package registrytest

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/images/platform"
)

// Ref parses a reference (by tag or digest) or fails the test.
func Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	return parsed(t, r, err)
}

// Tag parses a tag reference or fails the test.
func Tag(t testing.TB, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	return parsed(t, tag, err)
}

// Repo parses a repository or fails the test.
func Repo(t testing.TB, s string) name.Repository {
	t.Helper()
	r, err := name.NewRepository(s)
	return parsed(t, r, err)
}

// Platform parses a platform as written, "os/arch[/variant]"
// (platform.ParseExact), or fails the test.
func Platform(t testing.TB, s string) v1.Platform {
	t.Helper()
	p, err := platform.ParseExact(s)
	return parsed(t, p, err)
}

func parsed[T any](t testing.TB, v T, err error) T {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	return v
}
