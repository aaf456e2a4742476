package release_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/ciel-ci/ciel/images/release"
	"github.com/ciel-ci/ciel/internal/semver"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A backport: v1.3.9 is tagged after v1.4.2 exists. Only v1.3 moves.
func ExamplePlanTags() {
	v, err := semver.Parse("v1.3.9")
	if err != nil {
		log.Fatal(err)
	}
	existing := []string{"v1.4.2", "v1.4", "v1", "latest", "v1.3.8", "v1.3", "1a2b3c4"}
	plan, err := release.PlanTags(v, existing, release.Rules{Floating: true})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range plan.Tags {
		fmt.Printf("%-7s move=%-5v %s\n", t.Tag, t.Move, t.Reason)
	}
	// Output:
	// v1.3.9  move=true  the release itself
	// v1.3    move=true  highest release in 1.3.x (above v1.3.8)
	// v1      move=false v1.4.2 is higher
	// latest  move=false v1.4.2 is higher
}

// Strict SemVer: a two-component version is refused with the reason.
func ExamplePlanTags_invalidVersion() {
	_, err := semver.Parse("v1.2")
	fmt.Println(err)
	// Output:
	// not a semantic version: "v1.2": has 2 numeric component(s); SemVer 2.0 requires exactly three, MAJOR.MINOR.PATCH (e.g. 1.2.0)
}

// Prereleases get only their exact tag; build metadata is written with "_".
func ExampleExactTag() {
	v, _ := semver.Parse("v2.0.0-rc.1+build.5")
	tag, _ := release.ExactTag(v, release.Rules{})
	fmt.Println(tag)
	plan, _ := release.PlanTags(v, []string{"v1.9.0"}, release.Rules{Floating: true})
	for _, t := range plan.Tags[1:] {
		fmt.Println(t.Tag, t.Move, t.Reason)
	}
	// Output:
	// v2.0.0-rc.1_build.5
	// v2.0 false a prerelease gets only its exact tag
	// v2 false a prerelease gets only its exact tag
	// latest false a prerelease never moves latest on its own
}

// Promote the index built for commit 1a2b3c4 as v1.4.2 with floating tags.
func ExamplePromote() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	repo, _ := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/team/app")

	// The branch pipeline's index: two platforms.
	var adds []mutate.IndexAddendum
	for _, arch := range []string{"amd64", "arm64"} {
		img, _ := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: arch})
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if err := remote.WriteIndex(repo.Tag("1a2b3c4"), idx); err != nil {
		log.Fatal(err)
	}

	v, _ := semver.Parse("v1.4.2")
	rep, err := release.Promote(context.Background(), repo.Tag("1a2b3c4"), repo, v,
		release.WithRules(release.Rules{Floating: true}),
		release.WithRequirePlatforms(v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		log.Fatal(err)
	}
	want, _ := idx.Digest()
	fmt.Println("digest unchanged:", rep.Digest == want.String())
	for _, t := range rep.Tags {
		fmt.Println(t.Tag, t.Action)
	}
	// Output:
	// digest unchanged: true
	// v1.4.2 create
	// v1.4 create
	// v1 create
	// latest create
}
