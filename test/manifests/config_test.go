package manifests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	triggersv1alpha1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/ciel-ci/ciel/internal/yamldoc"
)

// renderConfig runs `kubectl kustomize config/`, what `kubectl apply -k
// config/` installs.
func renderConfig(t *testing.T) map[string][][]byte { return render(t, "config") }

func render(t *testing.T, dir string) map[string][][]byte {
	t.Helper()
	return renderPath(t, filepath.Join(repoRoot, dir))
}

// renderPath renders the kustomization in dir (a path).
func renderPath(t *testing.T, dir string) map[string][][]byte {
	t.Helper()
	var cmd *exec.Cmd
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		cmd = exec.Command(kubectl, "kustomize", dir)
	} else if kustomize, err := exec.LookPath("kustomize"); err == nil {
		cmd = exec.Command(kustomize, "build", dir)
	} else {
		if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
			t.Fatal("kubectl or kustomize is needed to render config/ (test/run.sh installs kustomize)")
		}
		t.Skip("neither kubectl nor kustomize installed")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	docs, err := yamldoc.Split(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string][][]byte{}
	for _, d := range docs {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal(d.Raw, &meta); err != nil {
			t.Fatal(err)
		}
		byKind[meta.Kind] = append(byKind[meta.Kind], d.Raw)
	}
	return byKind
}

func TestConfigRenders(t *testing.T) {
	objs := renderConfig(t)
	for kind, n := range map[string]int{"Namespace": 2, "Deployment": 1, "Service": 1, "ClusterInterceptor": 1, "ConfigMap": 1,
		"EventListener": 1, "TriggerTemplate": 3, "TriggerBinding": 3, "Pipeline": 2, "Task": 5} {
		if got := len(objs[kind]); got != n {
			t.Errorf("%d %s rendered, want %d", got, kind, n)
		}
	}

	var ci triggersv1alpha1.ClusterInterceptor
	if err := yaml.UnmarshalStrict(objs["ClusterInterceptor"][0], &ci); err != nil {
		t.Fatal(err)
	}
	if err := ci.Validate(context.Background()); err != nil {
		t.Errorf("ClusterInterceptor: %v", err)
	}
	svc := ci.Spec.ClientConfig.Service
	if ci.Name != "ciel" || ci.Labels["server/type"] != "https" || svc == nil || svc.Path != "/gitlab" || svc.Port == nil || *svc.Port != 8443 || svc.Name != "ciel-interceptor" {
		t.Errorf("ClusterInterceptor %+v", ci)
	}

	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(objs["Deployment"][0], &dep); err != nil {
		t.Fatal(err)
	}
	pod := dep.Spec.Template.Spec
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", pod.SecurityContext)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("container %s security context %+v", c.Name, sc)
		}
		if c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s lacks probes or a memory limit", c.Name)
		}
		if !strings.Contains(strings.Join(c.Args, " "), "--policies=/etc/ciel/policies") {
			t.Errorf("container %s does not read the mounted policies: %v", c.Name, c.Args)
		}
	}

	// The ConfigMap carries exactly the shipped policies, byte for byte.
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(objs["ConfigMap"][0], &cm); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(repoRoot, "policies", "*.yaml"))
	var want, got []string
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		want = append(want, filepath.Base(f))
		b, _ := os.ReadFile(f)
		if cm.Data[filepath.Base(f)] != string(b) {
			t.Errorf("ConfigMap %s differs from policies/%s", cm.Name, filepath.Base(f))
		}
	}
	for k := range cm.Data {
		got = append(got, k)
	}
	sort.Strings(got)
	if strings.Join(want, ",") != strings.Join(got, ",") {
		t.Errorf("ConfigMap holds %v, policies/ has %v (list every policy in policies/kustomization.yaml)", got, want)
	}
	if cm.Name != "ciel-policies" || cm.Namespace != "ciel" {
		t.Errorf("ConfigMap %s/%s", cm.Namespace, cm.Name)
	}

	// Least privilege: no wildcard, Secrets readable by name only in ciel,
	// and cluster-wide only through per-namespace RoleBindings.
	for _, kind := range []string{"Role", "ClusterRole"} {
		for _, raw := range objs[kind] {
			var r rbacv1.ClusterRole
			if err := yaml.Unmarshal(raw, &r); err != nil {
				t.Fatal(err)
			}
			for _, rule := range r.Rules {
				for _, v := range append(append(rule.Verbs, rule.Resources...), rule.APIGroups...) {
					if v == "*" {
						t.Errorf("%s %s grants a wildcard", kind, r.Name)
					}
				}
				for _, v := range rule.Verbs {
					if v == "list" || v == "watch" || v == "delete" || v == "create" {
						t.Errorf("%s %s grants %s", kind, r.Name, v)
					}
				}
			}
		}
	}
	for _, raw := range objs["ClusterRoleBinding"] {
		var b rbacv1.ClusterRoleBinding
		if err := yaml.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		if b.RoleRef.Name == "ciel-interceptor-secrets-reader" {
			t.Errorf("ClusterRoleBinding %s grants Secrets in every namespace", b.Name)
		}
	}
}

func TestReporterConfigRenders(t *testing.T) {
	objs := render(t, "config/reporter")
	if len(objs["Deployment"]) != 1 || len(objs["ClusterRole"]) != 1 || len(objs["RoleBinding"]) == 0 {
		t.Fatalf("rendered %v", objs)
	}
	// Granted per namespace only, in the namespaces the reporter watches.
	if n := len(objs["ClusterRoleBinding"]); n != 0 {
		t.Errorf("%d ClusterRoleBindings: the reporter must not read every namespace", n)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(objs["Deployment"][0], &dep); err != nil {
		t.Fatal(err)
	}
	var watched []string
	for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
		if v, ok := strings.CutPrefix(a, "--namespace="); ok {
			watched = append(watched, strings.Split(v, ",")...)
		}
	}
	var bound []string
	for _, raw := range objs["RoleBinding"] {
		var rb rbacv1.RoleBinding
		if err := yaml.UnmarshalStrict(raw, &rb); err != nil {
			t.Fatal(err)
		}
		if rb.RoleRef.Name == "ciel-reporter" {
			bound = append(bound, rb.Namespace)
		}
	}
	sort.Strings(watched)
	sort.Strings(bound)
	if len(watched) == 0 || strings.Join(watched, ",") != strings.Join(bound, ",") {
		t.Errorf("the reporter watches namespaces %v but is bound in %v: they must be the same", watched, bound)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s security context %+v", c.Name, sc)
		}
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(objs["ClusterRole"][0], &role); err != nil {
		t.Fatal(err)
	}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if res != "pipelineruns" && res != "taskruns" {
				t.Errorf("the reporter may touch %s", res)
			}
		}
		for _, v := range r.Verbs {
			if v == "*" || v == "delete" || v == "create" || v == "update" {
				t.Errorf("the reporter may %s", v)
			}
		}
	}
}

// TestConfigNamespace installs the Triggers side into two different
// namespaces, each with the one edit a user makes (`namespace:` in
// config/overlays/example), and checks that every namespaced object, every
// RoleBinding and every ServiceAccount subject follows it, while the
// interceptor stays in ciel.
func TestConfigNamespace(t *testing.T) {
	// The interceptor's own objects, in namespace ciel whatever the choice.
	interceptorNS := map[string]bool{
		"ServiceAccount/ciel-interceptor": true, "Secret/ciel-interceptor-tls": true, "Role/ciel-interceptor": true,
		"RoleBinding/ciel-interceptor": true, "Deployment/ciel-interceptor": true, "Service/ciel-interceptor": true,
		"ConfigMap/ciel-policies": true, "NetworkPolicy/ciel-interceptor": true,
	}
	for _, ns := range []string{"team-a", "builds-prod"} {
		t.Run(ns, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"config", "policies", "tasks", "pipelines"} {
				if err := os.CopyFS(filepath.Join(dir, d), os.DirFS(filepath.Join(repoRoot, d))); err != nil {
					t.Fatal(err)
				}
			}
			overlay := filepath.Join(dir, "config", "overlays", "example", "kustomization.yaml")
			b, err := os.ReadFile(overlay)
			if err != nil {
				t.Fatal(err)
			}
			edited := regexp.MustCompile(`(?m)^namespace: .*$`).ReplaceAll(b, []byte("namespace: "+ns))
			if bytes.Equal(edited, b) {
				t.Fatalf("%s has no namespace: line to edit", overlay)
			}
			if err := os.WriteFile(overlay, edited, 0o644); err != nil {
				t.Fatal(err)
			}

			var namespaces []string
			secretsBound := false
			for kind, docs := range renderPath(t, filepath.Join(dir, "config")) {
				for _, raw := range docs {
					var obj struct {
						Metadata struct{ Name, Namespace string }
						Subjects []rbacv1.Subject
						RoleRef  rbacv1.RoleRef `json:"roleRef"`
					}
					if err := yaml.Unmarshal(raw, &obj); err != nil {
						t.Fatal(err)
					}
					key := kind + "/" + obj.Metadata.Name
					switch {
					case kind == "Namespace":
						namespaces = append(namespaces, obj.Metadata.Name)
					case kind == "ClusterRole" || kind == "ClusterRoleBinding" || kind == "ClusterInterceptor":
						if obj.Metadata.Namespace != "" {
							t.Errorf("%s: cluster-scoped object with namespace %q", key, obj.Metadata.Namespace)
						}
					case interceptorNS[key]:
						if obj.Metadata.Namespace != "ciel" {
							t.Errorf("%s in namespace %q, want ciel", key, obj.Metadata.Namespace)
						}
					default:
						if obj.Metadata.Namespace != ns {
							t.Errorf("%s in namespace %q, want %s", key, obj.Metadata.Namespace, ns)
						}
					}
					for _, s := range obj.Subjects {
						want := ns
						if s.Name == "ciel-interceptor" {
							want = "ciel"
						}
						if s.Kind != rbacv1.ServiceAccountKind || s.Namespace != want {
							t.Errorf("%s: subject %s %s/%s, want ServiceAccount in %s", key, s.Kind, s.Namespace, s.Name, want)
						}
					}
					if kind == "RoleBinding" && obj.RoleRef.Name == "ciel-interceptor-secrets-reader" && obj.Metadata.Namespace == ns {
						secretsBound = true
					}
				}
			}
			want := []string{"ciel", ns}
			sort.Strings(namespaces)
			sort.Strings(want)
			if strings.Join(namespaces, ",") != strings.Join(want, ",") {
				t.Errorf("Namespaces %v, want ciel and %s", namespaces, ns)
			}
			if !secretsBound {
				t.Errorf("no RoleBinding lets the interceptor read the webhook Secrets of %s", ns)
			}
		})
	}
}
