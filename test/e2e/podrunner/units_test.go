package podrunner

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExpandVars(t *testing.T) {
	env := map[string]string{"A": "alpha", "B": "$(A)", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"$(A)", "alpha"},
		{"x$(A)y$(A)", "xalphayalpha"},
		{"$(B)", "$(A)"}, // no recursion
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$(A)", "$(A)"},
		{"$$", "$"},
		{"$(EMPTY)!", "!"},
		{"cost $5", "cost $5"},
		{"trailing $", "trailing $"},
		{"$(unterminated", "$(unterminated"},
		{"$()", "$()"},
	}
	for _, tc := range tests {
		if got := ExpandVars(tc.in, lookup); got != tc.want {
			t.Errorf("ExpandVars(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzExpandVars(f *testing.F) {
	for _, s := range []string{"$(A)", "$$", "$(", "a$(A)b", "$$(A)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Without defined variables expansion only folds "$$".
		got := ExpandVars(s, func(string) (string, bool) { return "", false })
		if len(got) > len(s) {
			t.Errorf("expansion grew %q to %q", s, got)
		}
	})
}

func node(name, arch string, ready bool, taints ...corev1.Taint) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelArchStable: arch, corev1.LabelOSStable: "linux", corev1.LabelHostname: name}},
		Spec:   corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}},
	}
}

func TestUnfit(t *testing.T) {
	amd := node("n-amd64", "amd64", true)
	arm := node("n-arm64", "arm64", true)
	tainted := node("n-tainted", "arm64", true, corev1.Taint{Key: "dedicated", Value: "builds", Effect: corev1.TaintEffectNoSchedule})
	podOn := func(mut func(*corev1.PodSpec)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
		mut(&p.Spec)
		return p
	}
	archAffinity := func(op corev1.NodeSelectorOperator, vals ...string) func(*corev1.PodSpec) {
		return func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelArchStable, Operator: op, Values: vals}}}},
			}}}
		}
	}
	assistant := []PlacedPod{{Namespace: "ns", Labels: map[string]string{"app.kubernetes.io/instance": "aa-1"}, Node: amd}}
	withAssistant := func(s *corev1.PodSpec) {
		s.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/instance": "aa-1"}},
			TopologyKey:   corev1.LabelHostname,
		}}}}
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		node   *corev1.Node
		placed []PlacedPod
		fits   bool
	}{
		{"no constraints", podOn(func(*corev1.PodSpec) {}), arm, nil, true},
		{"not ready", podOn(func(*corev1.PodSpec) {}), node("down", "amd64", false), nil, false},
		{"nodeSelector match", podOn(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{corev1.LabelArchStable: "arm64"} }), arm, nil, true},
		{"nodeSelector mismatch", podOn(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{corev1.LabelArchStable: "arm64"} }), amd, nil, false},
		{"nodeSelector unknown label", podOn(func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"gpu": "yes"} }), amd, nil, false},
		{"affinity In", podOn(archAffinity(corev1.NodeSelectorOpIn, "arm64", "riscv64")), arm, nil, true},
		{"affinity In miss", podOn(archAffinity(corev1.NodeSelectorOpIn, "riscv64")), arm, nil, false},
		{"affinity NotIn", podOn(archAffinity(corev1.NodeSelectorOpNotIn, "arm64")), amd, nil, true},
		{"affinity Exists", podOn(archAffinity(corev1.NodeSelectorOpExists)), amd, nil, true},
		{"untolerated taint", podOn(func(*corev1.PodSpec) {}), tainted, nil, false},
		{"tolerated taint", podOn(func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "builds", Effect: corev1.TaintEffectNoSchedule}}
		}), tainted, nil, true},
		{"tolerate all", podOn(func(s *corev1.PodSpec) { s.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}} }), tainted, nil, true},
		{"pod affinity to the assistant's node", podOn(withAssistant), amd, assistant, true},
		{"pod affinity elsewhere", podOn(withAssistant), arm, assistant, false},
		{"pod affinity, assistant not placed", podOn(withAssistant), amd, nil, false},
		{"named node", podOn(func(s *corev1.PodSpec) { s.NodeName = "n-amd64" }), arm, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			why := Unfit(tc.pod, tc.node, tc.placed)
			if (len(why) == 0) != tc.fits {
				t.Errorf("Unfit = %q, want fits=%v", why, tc.fits)
			}
		})
	}
}

func TestFieldValue(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u",
			Labels: map[string]string{"b": "2", "a": "1"}, Annotations: map[string]string{"tekton.dev/ready": "READY"}},
		Spec: corev1.PodSpec{NodeName: "n", ServiceAccountName: "sa"},
	}
	tests := map[string]string{
		"metadata.name":      "p",
		"metadata.namespace": "ns",
		"metadata.uid":       "u",
		"metadata.annotations['tekton.dev/ready']": "READY",
		"metadata.labels['missing']":               "",
		"metadata.labels":                          "a=\"1\"\nb=\"2\"",
		"spec.nodeName":                            "n",
		"spec.serviceAccountName":                  "sa",
	}
	for path, want := range tests {
		got, err := fieldValue(p, path)
		if err != nil || got != want {
			t.Errorf("fieldValue(%s) = %q, %v; want %q", path, got, err, want)
		}
	}
	if _, err := fieldValue(p, "status.phase"); err == nil {
		t.Error("unsupported field path accepted")
	}
}

func TestEnvListOrderAndOverride(t *testing.T) {
	e := newEnvList([]string{"PATH=/bin", "HOME=/root"})
	e.set("A", "1")
	e.set("PATH", "/usr/bin")
	if diff := cmp.Diff([]string{"PATH=/usr/bin", "HOME=/root", "A=1"}, e.list()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAllowExec(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		allow   bool
		wantErr bool
	}{
		{`[{"input":"https://x/repo.git","operator":"notin","values":[""]}]`, true, false},
		{`[{"input":"","operator":"notin","values":[""]}]`, false, false},
		{`[{"input":"a","operator":"in","values":["a","b"]},{"input":"c","operator":"in","values":["d"]}]`, false, false},
		{`[{"cel":"1 == 1"}]`, false, true},
		{`[{"input":"$(steps.a.results.b)","operator":"in","values":["x"]}]`, false, true},
		{`not json`, false, true},
	} {
		allow, err := allowExec(tc.raw)
		if (err != nil) != tc.wantErr || allow != tc.allow {
			t.Errorf("allowExec(%s) = %v, %v; want %v, error %v", tc.raw, allow, err, tc.allow, tc.wantErr)
		}
	}
}

// TestClaimRefusesWhatAKubeletCannotPull: an image that is no registry
// reference (a ko:// reference left unresolved) fails like InvalidImageName
// even when a rule's pattern would match it; pinned references go to their
// rule; an image no rule claims is an error.
func TestClaimRefusesWhatAKubeletCannotPull(t *testing.T) {
	ciel := Rule{Name: "ciel", Match: ImageContains("ciel"), Executor: ExecutorFunc(nil)}
	r := &Runner{cfg: Config{Rules: []Rule{ciel}}}
	tests := []struct {
		image, rule string // rule "" means refused
	}{
		{"registry.example.com/ciel/ciel:e2e", "ciel"},
		{"registry.example.com/ciel/ciel:v0.2.0@sha256:" + strings.Repeat("a", 64), "ciel"},
		{"ko://github.com/ciel-ci/ciel/cmd/ciel", ""},
		{"ciel:Not A Tag", ""},
		{"docker.io/alpine/git:v2.49.1", ""},
	}
	for _, tc := range tests {
		rl, err := r.claim(tc.image)
		if tc.rule == "" {
			if err == nil {
				t.Errorf("claim(%q) = rule %q, want an error", tc.image, rl.Name)
			}
			continue
		}
		if err != nil || rl.Name != tc.rule {
			t.Errorf("claim(%q) = %q, %v; want rule %q", tc.image, rl.Name, err, tc.rule)
		}
	}
}
