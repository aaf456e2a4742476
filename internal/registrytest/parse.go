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
	return must(name.ParseReference(s))(t)
}

// Tag parses a tag reference or fails the test.
func Tag(t testing.TB, s string) name.Tag {
	t.Helper()
	return must(name.NewTag(s))(t)
}

// Repo parses a repository or fails the test.
func Repo(t testing.TB, s string) name.Repository {
	t.Helper()
	return must(name.NewRepository(s))(t)
}

// Platform parses a platform as written, "os/arch[/variant]"
// (platform.ParseExact), or fails the test.
func Platform(t testing.TB, s string) v1.Platform {
	t.Helper()
	return must(platform.ParseExact(s))(t)
}

// must hands a parser's result to the test that asked for it, or fails
// that test with the parser's error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
