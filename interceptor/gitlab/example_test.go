package gitlab_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// Decode a push webhook once, then derive extensions.push and
// extensions.changed_files from it.
func Example() {
	body, err := os.ReadFile("testdata/net_changes_push.json")
	if err != nil {
		log.Fatal(err)
	}
	ev, err := gitlab.Decode("Push Hook", body) // the X-Gitlab-Event header
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("kind:", ev.Kind, "| body.ref:", ev.Body()["ref"])

	facts := ev.Push.Facts()
	fmt.Println("branch:", facts.Branch, "| slug:", facts.RefSlug, "| short sha:", facts.ShortSHA)

	files := gitlab.PayloadChangedFiles(ev.Push)
	fmt.Println("added:", files.Added)
	fmt.Println("modified:", files.Modified)
	fmt.Println("removed:", files.Removed)
	fmt.Println("truncated:", files.Truncated, "| source:", files.Source)

	// What CEL sees as extensions.push.is_branch and extensions.changed_files.count.
	fmt.Println(facts.Map()["is_branch"], files.Map()["count"])
	// Output:
	// kind: push | body.ref: refs/heads/feature/migrations
	// branch: feature/migrations | slug: feature-migrations | short sha: 4cc28e5c
	// added: [tools/migrate/main.go internal/db/schema.sql]
	// modified: [scripts/migrate.sh]
	// removed: [Makefile internal/db/legacy.sql]
	// truncated: false | source: payload
	// true 5
}

// A tag push carries its semantic version in extensions.push.semver.
func ExamplePushEvent_Facts() {
	body, err := os.ReadFile("testdata/tag_push_prerelease.json")
	if err != nil {
		log.Fatal(err)
	}
	ev, err := gitlab.Decode("Tag Push Hook", body)
	if err != nil {
		log.Fatal(err)
	}
	v := ev.Push.Facts().Semver
	fmt.Println(v.Valid, v.Version, v.Major, v.Minor, v.Patch, v.IsPrerelease)
	// Output:
	// true 2.0.0-rc.1 2 0 0 true
}

// Errors name what is wrong; the size limit has a sentinel for the HTTP layer.
func ExampleDecode_errors() {
	_, err := gitlab.Decode("Push Hook", []byte(`{"object_kind":"push","ref":"refs/heads/main","commits":[{"added":[42]}]}`))
	fmt.Println(err)

	_, err = gitlab.Decode("Tag Push Hook", []byte(`{"object_kind":"push","ref":"refs/heads/main"}`))
	fmt.Println(err)

	_, err = gitlab.Decode("", []byte(`{"object_kind": "push",}`))
	fmt.Println(err)

	_, err = gitlab.Decode("", make([]byte, 2<<20), gitlab.WithMaxBytes(1<<20))
	fmt.Println(errors.Is(err, gitlab.ErrTooLarge), err)
	// Output:
	// decoding push event: commits[0].added[0]: want string, got number
	// decoding webhook body: X-Gitlab-Event "Tag Push Hook" wants object_kind "tag_push", got "push"
	// decoding webhook body: invalid JSON at byte offset 23 (line 1, column 24): unexpected character '}', want a string object key
	// true webhook body too large: 2097152 bytes, over the limit of 1048576 bytes (1 MiB); raise the body size limit to accept it
}
