package command

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/images/release"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/internal/registrytest/clienttest"
	"github.com/google/go-cmp/cmp"
)

func TestReleasePromote(t *testing.T) {
	host := registrytest.Memory(t)
	repo := host + "/team/app"
	d1 := pushIndex(t, repo+":1a2b3c4", platformImage(t, "linux/amd64", "1"), platformImage(t, "linux/arm64", "1"))
	results := t.TempDir()

	// The version comes from the GitLab tag pipeline.
	r := mustRun(t, map[string]string{"CI_COMMIT_TAG": "v1.4.2"}, "release", "promote", "--from", repo+":1a2b3c4",
		"--floating", "--require-platforms", "linux/amd64,linux/arm64", "--results-dir", results)
	golden(t, "release-promote.txt", r.stdout, host, "REGISTRY", d1[7:19], "INDEXDIGEST1")
	for file, want := range map[string]string{
		"digest":       d1,
		"url":          repo + ":v1.4.2",
		"tags":         "v1.4.2,v1.4,v1,latest",
		"changed-tags": "v1.4.2,v1.4,v1,latest",
	} {
		if got := readFile(t, filepath.Join(results, file)); got != want {
			t.Errorf("result %s = %q, want %q", file, got, want)
		}
	}

	// A backport, as JSON: v1.3 moves, v1 and latest are kept.
	d2 := pushIndex(t, repo+":9f8e7d6", platformImage(t, "linux/amd64", "2"), platformImage(t, "linux/arm64", "2"))
	r = mustRun(t, nil, "release", "promote", "-o", "json", "--from", repo+":9f8e7d6", "--version", "v1.3.9", "--floating")
	var rep release.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	want := []release.TagResult{
		{Tag: "v1.3.9", Kind: release.KindExact, New: d2, Action: release.ActionCreate, Reason: "the release itself"},
		{Tag: "v1.3", Kind: release.KindMinor, New: d2, Action: release.ActionCreate, Reason: "first release in 1.3.x"},
		{Tag: "v1", Kind: release.KindMajor, Old: d1, Action: release.ActionKeep, Reason: "v1.4.2 is higher"},
		{Tag: "latest", Kind: release.KindLatest, Old: d1, Action: release.ActionKeep, Reason: "v1.4.2 is higher"},
	}
	if diff := cmp.Diff(want, rep.Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}

	// Re-running is a no-op.
	r = run(t, nil, "release", "promote", "--from", repo+"@"+d1, "--version", "v1.4.2", "--floating")
	if r.code != 0 || strings.Count(r.stdout, "unchanged") != 4 {
		t.Errorf("re-run: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Another digest for an existing version is refused, unless --force.
	r = run(t, nil, "release", "promote", "--from", repo+":9f8e7d6", "--version", "v1.4.2")
	r.exited(t, ExitFailed, "immutable")
	if clienttest.Head(t, repo+":v1.4.2") != d1 {
		t.Fatal("a refused promotion moved v1.4.2")
	}
	r = run(t, nil, "release", "promote", "--from", repo+":9f8e7d6", "--version", "v1.4.2", "--force")
	if r.code != 0 || clienttest.Head(t, repo+":v1.4.2") != d2 {
		t.Errorf("forced: exit %d: %s", r.code, r.stderr)
	}
}

func TestReleasePromoteDryRun(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	pushIndex(t, repo+":abc", platformImage(t, "linux/amd64", "1"))
	results := t.TempDir()
	r := mustRun(t, nil, "release", "promote", "--dry-run", "--from", repo+":abc", "--version", "2.0.0", "--floating", "--results-dir", results)
	if !strings.HasPrefix(r.stdout, "dry run: would promote") {
		t.Errorf("stdout does not say it is a dry run:\n%s", r.stdout)
	}
	for _, tag := range []string{"2.0.0", "2.0", "2", "latest"} {
		if d := clienttest.Head(t, repo+":"+tag); d != "" {
			t.Errorf("dry run created %s", tag)
		}
	}
	if got := readFile(t, filepath.Join(results, "changed-tags")); got != "2.0.0,2.0,2,latest" {
		t.Errorf("changed-tags = %q", got)
	}
}

func TestReleasePromoteRefusesImages(t *testing.T) {
	repo := registrytest.Memory(t) + "/app"
	single := push(t, repo+":abc", platformImage(t, "linux/amd64", "1"))
	r := run(t, nil, "release", "promote", "--from", single, "--version", "v1.0.0")
	r.exited(t, ExitFailed, "single image")
	pushIndex(t, repo+":amd", platformImage(t, "linux/amd64", "1"))
	r = run(t, nil, "release", "promote", "--from", repo+":amd", "--version", "v1.0.0", "--require-platforms", "linux/amd64,linux/arm64")
	r.exited(t, ExitFailed, "linux/arm64")
}
