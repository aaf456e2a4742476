package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/internal/yamldoc"
)

// FieldManager is the server-side-apply field manager of the harness.
const FieldManager = "ciel-e2e"

// DecodeYAML splits a multi-document YAML (or JSON) stream into objects,
// skipping empty documents.
func DecodeYAML(r io.Reader) ([]*unstructured.Unstructured, error) {
	docs, err := yamldoc.Split(r)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, doc := range docs {
		var m map[string]any
		if err := yaml.Unmarshal(doc.Raw, &m); err != nil {
			return nil, fmt.Errorf("decoding YAML: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("decoding YAML: a document has no apiVersion or kind")
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// DecodeFiles decodes every file of paths (YAML or JSON, possibly multiple
// documents each).
func DecodeFiles(paths ...string) ([]*unstructured.Unstructured, error) {
	var all []*unstructured.Unstructured
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		objs, err := DecodeYAML(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		all = append(all, objs...)
	}
	return all, nil
}

// applyObjects server-side applies objs in order. Namespaced objects without
// a namespace fail; use ApplyObjects to default one.
func applyObjects(ctx context.Context, dyn dynamic.Interface, disc discovery.DiscoveryInterface, objs []*unstructured.Unstructured) error {
	_, err := ApplyObjects(ctx, dyn, disc, "", objs)
	return err
}

// ApplyObjects server-side applies objs in order (field manager
// FieldManager, forcing conflicts), putting namespaced objects that name no
// namespace into namespace, and returns the objects as the server stored
// them.
func ApplyObjects(ctx context.Context, dyn dynamic.Interface, disc discovery.DiscoveryInterface, namespace string, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	var mapper meta.RESTMapper
	refresh := func() error {
		groups, err := restmapper.GetAPIGroupResources(disc)
		if err != nil {
			return fmt.Errorf("discovering API resources: %w", err)
		}
		mapper = restmapper.NewDiscoveryRESTMapper(groups)
		return nil
	}
	if err := refresh(); err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			// A CRD applied earlier in this call may have become served.
			if err = refresh(); err == nil {
				m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := o.GetNamespace()
			if ns == "" {
				ns = namespace
			}
			if ns == "" {
				return nil, fmt.Errorf("applying %s %s: no namespace", gvk.Kind, o.GetName())
			}
			o = o.DeepCopy()
			o.SetNamespace(ns)
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		applied, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return nil, fmt.Errorf("applying %s %s: %w", gvk.Kind, describe(o), err)
		}
		out = append(out, applied)
	}
	return out, nil
}

func describe(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetName()
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// waitCRDsEstablished waits until every CRD of crds has the Established
// condition.
func waitCRDsEstablished(ctx context.Context, dyn dynamic.Interface, crds []*unstructured.Unstructured) error {
	for _, c := range crds {
		name := c.GetName()
		err := waitUntil(ctx, 100*time.Millisecond, "CRD "+name+" Established", func(ctx context.Context) (bool, error) {
			got, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, ci := range conds {
				cm, ok := ci.(map[string]any)
				if ok && cm["type"] == "Established" && cm["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// trimLines returns s without leading and trailing blank lines.
func trimLines(s string) string { return strings.Trim(s, "\n") }
