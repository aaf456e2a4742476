package manifests

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/triggers/pkg/apis/triggers/contexts"
	triggersv1alpha1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1alpha1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/internal/registrytest"

	"github.com/ciel-ci/ciel/internal/imagefs"
	"github.com/ciel-ci/ciel/internal/yamldoc"
)

// koVersion is the ko the Makefile installs into bin/.
const koVersion = "v0.18.0"

const releaseVersion = "v0.2.0-test.1"

// TestRelease runs `make release` exactly as a maintainer does, against the
// real docker-registry, with a base image built here (no registry outside
// this machine is reachable), and checks what a user would apply:
// every image reference is pinned by digest; each of ours is an index with
// linux/amd64 and linux/arm64 in that registry, labelled with the version;
// the binaries in it print the version; every object decodes strictly into
// its Kubernetes, Tekton or Triggers type and passes Tekton's validation.
//
// Building three binaries for two architectures takes minutes on a cold
// cache: run with -timeout 60m. Without ko in bin/ (make release installs
// it) the test skips unless CIEL_REQUIRE_REAL=1.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every image (minutes)")
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("make"); err != nil {
		if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
			t.Fatal("make is needed to run `make release`")
		}
		t.Skip("make not installed")
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "ko-"+koVersion)); err != nil && os.Getenv("CIEL_REQUIRE_REAL") != "1" {
		t.Skipf("bin/ko-%s missing (`make release` installs it; CIEL_REQUIRE_REAL=1 makes this test do so)", koVersion)
	}
	reg := registrytest.Start(t)
	base := pushBaseImage(t, reg.Host+"/mirror/static:nonroot")

	out := t.TempDir()
	release, reporter := filepath.Join(out, "release.yaml"), filepath.Join(out, "reporter.yaml")
	cmd := exec.Command("make", "release", "KO_DOCKER_REPO="+reg.Host+"/ciel", "VERSION="+releaseVersion)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KO_DEFAULTBASEIMAGE="+base, "OUT="+release, "REPORTER_OUT="+reporter)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, b)
	}
	t.Logf("make release: %s", time.Since(start).Round(time.Second))

	ours := map[string]bool{}
	for _, file := range []string{release, reporter} {
		docs := readDocs(t, file)
		validateRelease(t, file, docs)
		for _, ref := range imageRefs(t, docs) {
			if !regexp.MustCompile(`@sha256:[0-9a-f]{64}$`).MatchString(ref) {
				t.Errorf("%s: image %s is not pinned by digest", filepath.Base(file), ref)
				continue
			}
			if strings.HasPrefix(ref, reg.Host+"/") {
				ours[ref] = true
			}
		}
		for _, d := range docs {
			var m struct {
				Kind     string
				Metadata struct {
					Name   string
					Labels map[string]string
				}
			}
			if err := yaml.Unmarshal(d, &m); err != nil {
				t.Fatal(err)
			}
			if m.Metadata.Labels["app.kubernetes.io/version"] != releaseVersion {
				t.Errorf("%s %s: app.kubernetes.io/version %q, want %q", m.Kind, m.Metadata.Name, m.Metadata.Labels["app.kubernetes.io/version"], releaseVersion)
			}
		}
	}

	repos := map[string]bool{}
	for _, ref := range sortedKeys(ours) {
		d, err := name.NewDigest(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		repo := d.Context().RepositoryStr()
		repos[repo] = true
		binary := strings.TrimPrefix(repo, "ciel/")
		idx, err := remote.Index(d)
		if err != nil {
			t.Errorf("%s: not an index in the registry: %v", ref, err)
			continue
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		platforms := map[string]v1.Hash{}
		for _, m := range im.Manifests {
			if m.Platform != nil {
				platforms[m.Platform.OS+"/"+m.Platform.Architecture] = m.Digest
			}
		}
		for _, p := range []string{"linux/amd64", "linux/arm64"} {
			h, ok := platforms[p]
			if !ok {
				t.Errorf("%s: no %s image (has %v)", ref, p, platforms)
				continue
			}
			img, err := idx.Image(h)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if got := cf.Config.Labels["org.opencontainers.image.version"]; got != releaseVersion {
				t.Errorf("%s %s: label org.opencontainers.image.version %q", ref, p, got)
			}
			if cf.Config.User == "" || cf.Config.User == "0" || cf.Config.User == "root" {
				t.Errorf("%s %s: runs as %q, want the base's non-root user", ref, p, cf.Config.User)
			}
			mf, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if got := mf.Annotations["org.opencontainers.image.version"]; got != releaseVersion {
				t.Errorf("%s %s: annotation org.opencontainers.image.version %q", ref, p, got)
			}
			if p == runtime.GOOS+"/"+runtime.GOARCH {
				bin := extract(t, img, "ko-app/"+binary, t.TempDir())
				b, err := exec.Command(bin, "--version").CombinedOutput()
				if err != nil {
					t.Errorf("%s --version: %v\n%s", binary, err, b)
				} else if got, want := strings.TrimSpace(string(b)), binary+" version "+releaseVersion; got != want {
					t.Errorf("%s --version printed %q, want %q", binary, got, want)
				} else {
					t.Logf("%s (%s): %s", ref, p, got)
				}
			}
		}
		// The version tag names the same index.
		tagged, err := remote.Head(d.Context().Tag(releaseVersion))
		if err != nil || tagged.Digest.String() != d.DigestStr() {
			t.Errorf("%s:%s does not name %s (%v, %v)", d.Context(), releaseVersion, d.DigestStr(), tagged, err)
		}
	}
	for _, want := range []string{"ciel/ciel", "ciel/interceptor", "ciel/reporter"} {
		if !repos[want] {
			t.Errorf("no image of %s in the release (images: %v)", want, sortedKeys(ours))
		}
	}
}

// pushBaseImage pushes a minimal non-root base image, an OCI index for
// linux/amd64 and linux/arm64 (a /tmp and an /etc/passwd naming uid 65532),
// and returns it pinned by digest.
func pushBaseImage(t *testing.T, ref string) string {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	layer, err := imagefs.Layer([]imagefs.File{
		{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
		{Path: "etc", Mode: fs.ModeDir | 0o755},
		{Path: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
	})
	must(err)
	idx, err := imagefs.Index([]v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, func(p v1.Platform) (v1.Image, error) {
		return imagefs.Image(p, v1.Config{User: "65532", Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}, layer)
	})
	must(err)
	tag, err := name.NewTag(ref)
	must(err)
	must(remote.WriteIndex(tag, idx))
	h, err := idx.Digest()
	must(err)
	return tag.Context().Digest(h.String()).String()
}

// extract writes the file at path (no leading slash) of img's filesystem to
// dir and returns its path.
func extract(t *testing.T, img v1.Image, path, dir string) string {
	t.Helper()
	files, err := imagefs.ReadFiles(img, path)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := files[path]
	if !ok {
		t.Fatalf("%s not in the image", path)
	}
	out := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// readDocs splits a multi-document YAML file.
func readDocs(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raws, err := yamldoc.Split(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var docs [][]byte
	for _, r := range raws {
		docs = append(docs, r.Raw)
	}
	return docs
}

// imageParam names a param whose value is an image: CIEL_IMAGE,
// BUILDER_IMAGE, ciel-image, ...
var imageParam = regexp.MustCompile(`(?i)(^|[_-])image$`)

// imageRefs returns every image a release file names: each container's and
// step's image, and the default of every image param of Tasks, Pipelines and
// TriggerTemplates.
func imageRefs(t *testing.T, docs [][]byte) []string {
	t.Helper()
	var refs []string
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			if n, ok := v["name"].(string); ok && imageParam.MatchString(n) {
				if d, ok := v["default"].(string); ok {
					refs = append(refs, d)
				}
			}
			for k, c := range v {
				walk(c, k)
			}
		case []any:
			for _, c := range v {
				walk(c, key)
			}
		case string:
			if key == "image" && !strings.HasPrefix(v, "$(") {
				refs = append(refs, v)
			}
		}
	}
	for _, d := range docs {
		var v any
		if err := yaml.Unmarshal(d, &v); err != nil {
			t.Fatal(err)
		}
		walk(v, "")
	}
	sort.Strings(refs)
	if len(refs) == 0 {
		t.Fatal("no image references found")
	}
	return refs
}

// validateRelease decodes every object strictly into its Go type and
// validates the Tekton and Triggers ones as their admission webhooks do.
func validateRelease(t *testing.T, file string, docs [][]byte) {
	t.Helper()
	ctx := validationContext(t)
	kinds := map[string]int{}
	for i, raw := range docs {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		kinds[meta.Kind]++
		var obj any
		var validate func(context.Context) error
		switch meta.Kind {
		case "Namespace":
			obj = &corev1.Namespace{}
		case "ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "Secret":
			obj = &corev1.Secret{}
		case "Service":
			obj = &corev1.Service{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "Role":
			obj = &rbacv1.Role{}
		case "ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "RoleBinding":
			obj = &rbacv1.RoleBinding{}
		case "ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "ClusterInterceptor":
			v := &triggersv1alpha1.ClusterInterceptor{}
			obj, validate = v, func(ctx context.Context) error { return fieldErr(v.Validate(ctx)) }
		case "EventListener":
			v := &triggersv1.EventListener{}
			obj, validate = v, func(ctx context.Context) error {
				v.SetDefaults(contexts.WithUpgradeViaDefaulting(ctx))
				return fieldErr(v.Validate(ctx))
			}
		case "TriggerBinding":
			v := &triggersv1.TriggerBinding{}
			obj, validate = v, func(ctx context.Context) error { return fieldErr(v.Validate(ctx)) }
		case "TriggerTemplate":
			v := &triggersv1.TriggerTemplate{}
			obj, validate = v, func(ctx context.Context) error { return fieldErr(v.Validate(ctx)) }
		case "Task":
			v := &pipelinev1.Task{}
			obj, validate = v, func(ctx context.Context) error { v.SetDefaults(ctx); return fieldErr(v.Validate(ctx)) }
		case "Pipeline":
			v := &pipelinev1.Pipeline{}
			obj, validate = v, func(ctx context.Context) error { v.SetDefaults(ctx); return fieldErr(v.Validate(ctx)) }
		default:
			t.Errorf("%s#%d: no Go type known for kind %q", filepath.Base(file), i, meta.Kind)
			continue
		}
		if err := strict(raw, obj); err != nil {
			t.Errorf("%s#%d (%s): strict decoding: %v", filepath.Base(file), i, meta.Kind, err)
			continue
		}
		if validate != nil {
			if err := validate(ctx); err != nil {
				t.Errorf("%s#%d (%s): %v", filepath.Base(file), i, meta.Kind, err)
			}
		}
	}
	t.Logf("%s: %s", filepath.Base(file), fmt.Sprint(kinds))
}

// fieldErr keeps a nil *apis.FieldError nil as an error.
func fieldErr(e *apis.FieldError) error {
	if e == nil {
		return nil
	}
	return e
}
