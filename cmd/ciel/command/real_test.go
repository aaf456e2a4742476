package command

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/internal/registryclient"
	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRealSelfSignedRegistry runs `ciel index create` and `ciel index
// inspect` against a real registry with a private CA and htpasswd
// authentication, credentials in $DOCKER_CONFIG as Kaniko keeps them and
// the CA given through CIEL_CA_FILE.
func TestRealSelfSignedRegistry(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithTLS(), registrytest.WithBasicAuth("kaniko", "pa55"))
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("kaniko:pa55"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, auth)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", dir)

	client, err := registryclient.New(registryclient.WithCAFile(reg.CAFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var sources []string
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		img := platformImage(t, p, "real")
		h, _ := img.Digest()
		ref, err := client.ParseReference(reg.Host + "/team/app@" + h.String())
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img, client.RemoteOptions(ctx)...); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, ref.String()+"="+p)
	}

	env := map[string]string{"CIEL_CA_FILE": reg.CAFile}
	r := mustRun(t, env, append([]string{"index", "create", "--tag", reg.Host + "/team/app:v1"}, sources...)...)
	digest := strings.SplitN(r.stdout, "\n", 2)[0]
	r = mustRun(t, env, "index", "inspect", reg.Host+"/team/app:v1")
	if !strings.Contains(r.stdout, "@"+digest) || !strings.Contains(r.stdout, "linux/arm64") {
		t.Errorf("inspect output does not show the index %s:\n%s", digest, r.stdout)
	}

	// Without the CA the registry's certificate is not trusted.
	r = run(t, nil, "--retries", "0", "index", "inspect", reg.Host+"/team/app:v1")
	r.exited(t, ExitFailed, "certificate")
}

// TestRealMergeThenRelease runs the pipeline's two steps against a real
// registry: the branch pipeline merges the per-arch images, the tag
// pipeline promotes that index.
func TestRealMergeThenRelease(t *testing.T) {
	reg := registrytest.Start(t)
	repo := reg.Host + "/team/app"
	var sources []string
	for _, arch := range []string{"amd64", "arm64"} {
		sources = append(sources, push(t, repo+":1a2b3c4-"+arch, platformImage(t, "linux/"+arch, "e2e")))
	}
	dir := t.TempDir()
	r := mustRun(t, nil, append([]string{"index", "create", "--tag", repo + ":1a2b3c4",
		"--require-platforms", "linux/amd64,linux/arm64", "--digest-file", filepath.Join(dir, "IMAGE_DIGEST")}, sources...)...)
	digest := readFile(t, filepath.Join(dir, "IMAGE_DIGEST"))

	r = mustRun(t, map[string]string{"CI_COMMIT_TAG": "v1.0.0"}, "release", "promote", "--from", repo+"@"+digest,
		"--floating", "--require-platforms", "linux/amd64,linux/arm64", "--results-dir", dir)
	if got := readFile(t, filepath.Join(dir, "tags")); got != "v1.0.0,v1.0,v1,latest" {
		t.Errorf("tags result = %q", got)
	}
	r = run(t, nil, "index", "inspect", "-o", "json", repo+":latest")
	if r.code != 0 || !strings.Contains(r.stdout, `"digest": "`+digest+`"`) {
		t.Errorf("latest is not the merged index %s: exit %d\n%s%s", digest, r.code, r.stdout, r.stderr)
	}
}

// TestRealReleaseRefusesAnotherCommit: the commit tag sha-<commit> is
// rewritten with an index built from another commit after the release
// pipeline found the right one. find-index then refuses the tag, a
// promotion of the digest found first still releases that exact index, and
// a promotion of the rewritten digest is refused without a write.
func TestRealReleaseRefusesAnotherCommit(t *testing.T) {
	reg := registrytest.Start(t)
	repo := reg.Host + "/team/app"
	commit, other := strings.Repeat("5e", 20), strings.Repeat("7f", 20)
	var sources []string
	for _, arch := range []string{"amd64", "arm64"} {
		sources = append(sources, push(t, repo+":sha-"+commit+"-"+arch, platformImage(t, "linux/"+arch, "rev")))
	}
	dir := t.TempDir()
	merge := func(revision string) string {
		t.Helper()
		mustRun(t, nil, append([]string{"index", "create", "--tag", repo + ":sha-" + commit, "--revision", revision,
			"--digest-file", filepath.Join(dir, "IMAGE_DIGEST")}, sources...)...)
		return readFile(t, filepath.Join(dir, "IMAGE_DIGEST"))
	}
	find := func() result {
		t.Helper()
		return run(t, nil, "tekton", "find-index", "--image", repo, "--tag", "sha-"+commit, "--revision", commit,
			"--required", "--url-file", filepath.Join(dir, "IMAGE_URL"))
	}
	built := merge(commit)
	if r := find(); r.code != 0 {
		t.Fatalf("find-index: exit %d: %s", r.code, r.stderr)
	}
	found := readFile(t, filepath.Join(dir, "IMAGE_URL"))
	if found != repo+"@"+built {
		t.Fatalf("find-index gave %s, want %s@%s", found, repo, built)
	}

	rewritten := merge(other)
	if rewritten == built {
		t.Fatal("the revision annotation did not change the index digest")
	}
	if r := find(); r.code != ExitFailed || !strings.Contains(r.stderr, "not the commit "+commit) {
		t.Errorf("find-index on the rewritten tag: exit %d, stderr %s", r.code, r.stderr)
	}
	r := run(t, nil, "release", "promote", "--from", repo+"@"+rewritten, "--revision", commit, "--version", "v2.0.0")
	r.exited(t, ExitFailed, "not the commit "+commit)
	if r := run(t, nil, "index", "inspect", repo+":v2.0.0"); r.code == 0 {
		t.Error("a refused promotion wrote v2.0.0")
	}
	r = mustRun(t, nil, "release", "promote", "--from", found, "--revision", commit, "--version", "v1.0.0", "--results-dir", dir)
	if got := readFile(t, filepath.Join(dir, "digest")); got != built {
		t.Errorf("released %s, want the index found first %s", got, built)
	}
}
