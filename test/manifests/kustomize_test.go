package manifests

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kustomization is the part of a kustomization.yaml these folders use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// TestKustomizations: config/triggers/kustomization.yaml installs the
// Tasks and Pipelines with the Triggers objects, and each kustomization
// lists every YAML of its folder, so that nothing is shipped untested and
// nothing tested is left out.
func TestKustomizations(t *testing.T) {
	for _, tc := range []struct {
		dir   string
		bases []string
	}{
		{dir: "tasks"},
		{dir: "pipelines"},
		{dir: "config/triggers", bases: []string{"../../tasks", "../../pipelines"}},
		{dir: "config/triggers-per-project"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(repoRoot, tc.dir, "kustomization.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var k kustomization
			if err := strict(b, &k); err != nil {
				t.Fatalf("strict decoding: %v", err)
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
				t.Errorf("apiVersion/kind = %s/%s", k.APIVersion, k.Kind)
			}
			var files, bases []string
			for _, r := range k.Resources {
				fi, err := os.Stat(filepath.Join(repoRoot, tc.dir, r))
				switch {
				case err != nil:
					t.Errorf("resource %s: %v", r, err)
				case fi.IsDir():
					if _, err := os.Stat(filepath.Join(repoRoot, tc.dir, r, "kustomization.yaml")); err != nil {
						t.Errorf("resource %s is a directory without a kustomization.yaml", r)
					}
					bases = append(bases, r)
				default:
					files = append(files, path.Clean(r))
				}
			}
			var want []string
			for _, d := range loadDocs(t, tc.dir) {
				rel, _ := filepath.Rel(tc.dir, d.path)
				if !slices.Contains(want, filepath.ToSlash(rel)) {
					want = append(want, filepath.ToSlash(rel))
				}
			}
			sort.Strings(files)
			sort.Strings(want)
			if diff := cmp.Diff(want, files); diff != "" {
				t.Errorf("files listed (-YAML in the folder +kustomization resources):\n%s", diff)
			}
			if diff := cmp.Diff(tc.bases, bases); diff != "" {
				t.Errorf("bases (-want +got):\n%s", diff)
			}
		})
	}
}
