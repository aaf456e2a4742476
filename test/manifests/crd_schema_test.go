package manifests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// crdSchemas returns the OpenAPI schemas of the pinned Tekton modules' CRDs
// (Pipelines' config/300-crds, Triggers' config/300-*.yaml) by "apiVersion
// Kind": what the API server checks an object against on apply, before any
// webhook.
func crdSchemas(t *testing.T) map[string]*spec.Schema {
	t.Helper()
	var files []string
	for mod, pattern := range map[string]string{
		"github.com/tektoncd/pipeline": "config/300-crds/*.yaml",
		"github.com/tektoncd/triggers": "config/300-*.yaml",
	} {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
		if err != nil {
			t.Fatalf("locating %s: %v", mod, err)
		}
		m, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), pattern))
		if err != nil || len(m) == 0 {
			t.Fatalf("no CRDs of %s (%s): %v", mod, pattern, err)
		}
		files = append(files, m...)
	}
	schemas := map[string]*spec.Schema{}
	for _, crd := range readCRDs(t, files) {
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			b, err := json.Marshal(v.Schema.OpenAPIV3Schema)
			if err != nil {
				t.Fatal(err)
			}
			s := &spec.Schema{}
			if err := json.Unmarshal(b, s); err != nil {
				t.Fatalf("%s %s: %v", crd.Name, v.Name, err)
			}
			schemas[crd.Spec.Group+"/"+v.Name+" "+crd.Spec.Names.Kind] = s
		}
	}
	return schemas
}

// TestCRDSchemas validates every manifest, and every PipelineRun a
// TriggerTemplate renders, against the OpenAPI schema of its Tekton CRD, as
// the API server does on apply: a field Tekton's Go types leave optional
// may still be required by the schema (a step workspace's mountPath).
func TestCRDSchemas(t *testing.T) {
	schemas := crdSchemas(t)
	check := func(where string, raw []byte) {
		t.Helper()
		var obj map[string]any
		if err := yaml.Unmarshal(raw, &obj); err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		key, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		s, ok := schemas[key+" "+kind]
		if !ok {
			return // not a Tekton kind (ServiceAccount, RoleBinding...)
		}
		if err := validate.AgainstSchema(s, obj, strfmt.Default); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
	o := decodeAll(t)
	checked := 0
	for _, d := range o.docs {
		if strings.HasPrefix(d.kind, "Task") || strings.HasPrefix(d.kind, "Pipeline") || d.kind == "EventListener" || strings.HasPrefix(d.kind, "Trigger") {
			checked++
		}
		check(d.String(), d.raw)
	}
	if checked == 0 {
		t.Fatal("no Tekton manifests checked")
	}
	for _, name := range sortedKeys(o.templates) {
		tt := o.templates[name]
		for i, raw := range placeholderResources(tt) {
			check(fmt.Sprintf("TriggerTemplate %s resourcetemplates[%d]", name, i), raw)
		}
	}
}

// readCRDs decodes the CustomResourceDefinitions of files.
func readCRDs(t *testing.T, files []string) []apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	var crds []apiextensionsv1.CustomResourceDefinition
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			raw, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			var crd apiextensionsv1.CustomResourceDefinition
			if err := yaml.Unmarshal(raw, &crd); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if crd.Kind == "CustomResourceDefinition" {
				crds = append(crds, crd)
			}
		}
	}
	return crds
}
