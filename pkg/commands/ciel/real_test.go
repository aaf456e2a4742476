package ciel

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/ciel-ci/ciel/pkg/registryclient"
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
	r := run(t, env, append([]string{"index", "create", "--tag", reg.Host + "/team/app:v1"}, sources...)...)
	if r.code != 0 {
		t.Fatalf("create: exit %d: %s", r.code, r.stderr)
	}
	digest := strings.SplitN(r.stdout, "\n", 2)[0]
	r = run(t, env, "index", "inspect", reg.Host+"/team/app:v1")
	if r.code != 0 {
		t.Fatalf("inspect: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "@"+digest) || !strings.Contains(r.stdout, "linux/arm64") {
		t.Errorf("inspect output does not show the index %s:\n%s", digest, r.stdout)
	}

	// Without the CA the registry's certificate is not trusted.
	r = run(t, nil, "--retries", "0", "index", "inspect", reg.Host+"/team/app:v1")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "certificate") {
		t.Errorf("without the CA: exit %d, stderr %s", r.code, r.stderr)
	}
}
