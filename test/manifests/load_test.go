package manifests

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"github.com/tektoncd/triggers/pkg/template"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/internal/yamldoc"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// The directories of Tekton YAML, relative to the repository root.
var manifestDirs = []string{"tasks", "pipelines", "config/triggers", "config/triggers-per-project"}

// doc is one YAML document of a manifest file.
type doc struct {
	path  string // relative to the repository root
	index int    // position in a multi-document file
	raw   []byte
	kind  string
}

func (d doc) String() string { return fmt.Sprintf("%s#%d (%s)", d.path, d.index, d.kind) }

// loadDocs reads every YAML document under dirs, except kustomizations.
func loadDocs(t *testing.T, dirs ...string) []doc {
	t.Helper()
	var docs []doc
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !isYAML(path) || filepath.Base(path) == "kustomization.yaml" {
				return nil
			}
			rel, _ := filepath.Rel(repoRoot, path)
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			raws, err := yamldoc.Split(f)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			for _, r := range raws {
				var meta struct {
					Kind string `json:"kind"`
				}
				if err := yaml.Unmarshal(r.Raw, &meta); err != nil {
					return fmt.Errorf("%s#%d: %w", rel, r.Index, err)
				}
				docs = append(docs, doc{path: filepath.ToSlash(rel), index: r.Index, raw: r.Raw, kind: meta.Kind})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(docs) == 0 {
		t.Fatalf("no YAML found under %v", dirs)
	}
	return docs
}

func isYAML(path string) bool {
	ext := filepath.Ext(path)
	return ext == ".yaml" || ext == ".yml"
}

// strict decodes YAML into v, failing on unknown or duplicated fields.
func strict(raw []byte, v any) error {
	return yaml.UnmarshalStrict(raw, v)
}

// decodeInto returns a decoder of one kind: it decodes a document
// strictly into a new T, files it by name in into (unless into is nil) and
// returns the name.
func decodeInto[T any, P interface {
	*T
	GetName() string
}](into map[string]P) func([]byte) (string, error) {
	return func(raw []byte) (string, error) {
		v := P(new(T))
		err := strict(raw, v)
		if into != nil {
			into[v.GetName()] = v
		}
		return v.GetName(), err
	}
}

// objects are the decoded manifests, by kind and name.
type objects struct {
	tasks     map[string]*pipelinev1.Task
	pipelines map[string]*pipelinev1.Pipeline
	listeners map[string]*triggersv1.EventListener
	bindings  map[string]*triggersv1.TriggerBinding
	templates map[string]*triggersv1.TriggerTemplate
	paths     map[string]string // "Kind/name" -> file
	docs      []doc
}

// decodeAll decodes every document strictly into its Go type; a kind
// without one is an error, as is a name given twice.
func decodeAll(t *testing.T) *objects {
	t.Helper()
	o := &objects{
		tasks:     map[string]*pipelinev1.Task{},
		pipelines: map[string]*pipelinev1.Pipeline{},
		listeners: map[string]*triggersv1.EventListener{},
		bindings:  map[string]*triggersv1.TriggerBinding{},
		templates: map[string]*triggersv1.TriggerTemplate{},
		paths:     map[string]string{},
		docs:      loadDocs(t, manifestDirs...),
	}
	decoders := map[string]func([]byte) (string, error){
		"Task":               decodeInto(o.tasks),
		"Pipeline":           decodeInto(o.pipelines),
		"EventListener":      decodeInto(o.listeners),
		"TriggerBinding":     decodeInto(o.bindings),
		"TriggerTemplate":    decodeInto(o.templates),
		"ServiceAccount":     decodeInto[corev1.ServiceAccount](nil),
		"RoleBinding":        decodeInto[rbacv1.RoleBinding](nil),
		"ClusterRoleBinding": decodeInto[rbacv1.ClusterRoleBinding](nil),
	}
	for _, d := range o.docs {
		decode, ok := decoders[d.kind]
		if !ok {
			t.Errorf("%s: no Go type known for kind %q", d, d.kind)
			continue
		}
		name, err := decode(d.raw)
		if err != nil {
			t.Errorf("%s: strict decoding: %v", d, err)
			continue
		}
		key := d.kind + "/" + name
		if name == "" {
			t.Errorf("%s: no metadata.name", d)
		}
		if prev, dup := o.paths[key]; dup {
			t.Errorf("%s: %s also defined in %s", d, key, prev)
		}
		o.paths[key] = d.path
	}
	if t.Failed() {
		t.FailNow()
	}
	return o
}

// validationContext is the context Tekton's admission webhook validates
// with on a cluster whose feature flags are set as these Pipelines need:
// matrix, array results and array step results are beta features.
func validationContext(t *testing.T) context.Context {
	t.Helper()
	ff, err := config.NewFeatureFlagsFromMap(map[string]string{"enable-api-fields": "beta"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.FromContextOrDefaults(context.Background())
	cfg.FeatureFlags = ff
	return apis.WithinCreate(config.ToContext(context.Background(), cfg))
}

// placeholderResources renders a TriggerTemplate's resource templates with
// Triggers' own code, every param set to "placeholder".
func placeholderResources(tt *triggersv1.TriggerTemplate) []json.RawMessage {
	var params []triggersv1.Param
	for _, p := range tt.Spec.Params {
		params = append(params, triggersv1.Param{Name: p.Name, Value: "placeholder"})
	}
	return template.ResolveResources(tt, params)
}

// defaulted returns copies of objs with Tekton's defaults applied (param
// and result types, ...), as the admission webhook applies them.
func defaulted[T interface {
	DeepCopy() T
	SetDefaults(context.Context)
}](ctx context.Context, objs map[string]T) map[string]T {
	out := make(map[string]T, len(objs))
	for name, v := range objs {
		v = v.DeepCopy()
		v.SetDefaults(ctx)
		out[name] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
