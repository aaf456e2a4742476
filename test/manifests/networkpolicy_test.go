package manifests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// TestInterceptorNetworkPolicy renders config/ and checks, with the
// Kubernetes types, that the interceptor's pods admit on their port only
// EventListener pods (labelled as Tekton Triggers' own code labels them)
// and the metrics scraper.
func TestInterceptorNetworkPolicy(t *testing.T) {
	objs := renderConfig(t)
	if len(objs["NetworkPolicy"]) != 1 {
		t.Fatalf("%d NetworkPolicies rendered, want 1", len(objs["NetworkPolicy"]))
	}
	var np networkingv1.NetworkPolicy
	if err := yaml.UnmarshalStrict(objs["NetworkPolicy"][0], &np); err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(objs["Deployment"][0], &dep); err != nil {
		t.Fatal(err)
	}
	if np.Namespace != dep.Namespace {
		t.Errorf("NetworkPolicy in %q, interceptor in %q", np.Namespace, dep.Namespace)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Fatalf("podSelector %v does not select the interceptor's pods %v (%v)", np.Spec.PodSelector, dep.Spec.Template.Labels, err)
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policyTypes %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	port := dep.Spec.Template.Spec.Containers[0].Ports[0]

	// admitted reports whether a pod with these labels may reach the
	// interceptor's serving port.
	admitted := func(pod map[string]string) bool {
		for _, rule := range np.Spec.Ingress {
			portOK := false
			for _, p := range rule.Ports {
				if p.Port != nil && (p.Port.StrVal == port.Name || p.Port.IntVal == port.ContainerPort) {
					portOK = true
				}
			}
			if !portOK {
				continue
			}
			for _, peer := range rule.From {
				if peer.IPBlock != nil {
					t.Errorf("an ipBlock peer admits addresses, not pods: %+v", peer.IPBlock)
					continue
				}
				if peer.PodSelector == nil {
					t.Errorf("a peer without a podSelector admits every pod of its namespaces: %+v", peer)
					continue
				}
				s, err := metav1.LabelSelectorAsSelector(peer.PodSelector)
				if err != nil {
					t.Fatal(err)
				}
				if !s.Empty() && s.Matches(labels.Set(pod)) {
					return true
				}
			}
		}
		return false
	}
	eventListener := eventListenerPodLabels(t, "ciel-gitlab")
	tests := []struct {
		name string
		pod  map[string]string
		want bool
	}{
		{"EventListener pod (Triggers' labels)", eventListener, true},
		{"Prometheus", map[string]string{"app.kubernetes.io/name": "prometheus"}, true},
		{"a build pod", map[string]string{"tekton.dev/pipelineRun": "build-x", "app.kubernetes.io/managed-by": "tekton-pipelines"}, false},
		{"an unlabelled pod", map[string]string{}, false},
		{"the reporter", map[string]string{"app.kubernetes.io/name": "ciel-reporter", "app.kubernetes.io/part-of": "ciel"}, false},
	}
	for _, tt := range tests {
		if got := admitted(tt.pod); got != tt.want {
			t.Errorf("%s %v: admitted %v, want %v", tt.name, tt.pod, got, tt.want)
		}
	}
}

// eventListenerPodLabels are the labels Tekton Triggers puts on an
// EventListener's pods: its DefaultStaticResourceLabels plus eventlistener:
// <name> (GenerateLabels). Importing that package would link Triggers'
// reconciler; the test reads the pinned module's source instead, so a
// Triggers upgrade that changes the labels fails here.
func eventListenerPodLabels(t *testing.T, name string) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tektoncd/triggers").Output()
	if err != nil {
		t.Fatalf("locating the Triggers module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	config, err := os.ReadFile(filepath.Join(dir, "pkg", "reconciler", "eventlistener", "resources", "config.go"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "pkg", "reconciler", "eventlistener", "resources", "meta.go"))
	if err != nil {
		t.Fatal(err)
	}
	static := map[string]string{"app.kubernetes.io/managed-by": "EventListener", "app.kubernetes.io/part-of": "Triggers"}
	for k, v := range static {
		if !strings.Contains(string(config), `"`+k+`": `) || !strings.Contains(string(config), `"`+v+`"`) {
			t.Fatalf("Triggers' DefaultStaticResourceLabels no longer carry %s: %s", k, v)
		}
	}
	if !strings.Contains(string(meta), `resourceLabels["eventlistener"] = eventListenerName`) {
		t.Fatal("Triggers' GenerateLabels no longer adds the eventlistener label")
	}
	static["eventlistener"] = name
	return static
}
