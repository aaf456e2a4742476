package podrunner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/pod"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// renderPod builds the pod Tekton's controller would create for a TaskRun
// of spec, with Tekton's own pod builder.
func renderPod(t *testing.T, spec v1.TaskSpec) *corev1.Pod {
	t.Helper()
	kube := fake.NewSimpleClientset(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "ns"}})
	b := &pod.Builder{
		Images: pipeline.Images{
			EntrypointImage: "ghcr.io/tektoncd/pipeline/entrypoint:test", NopImage: "nop",
			ShellImage: "busybox", ShellImageWin: "pwsh", SidecarLogResultsImage: "slr", WorkingDirInitImage: "wdi",
		},
		KubeClient: kube,
	}
	tr := &v1.TaskRun{
		ObjectMeta: metav1.ObjectMeta{Name: "tr", Namespace: "ns", UID: "uid-1"},
		Spec:       v1.TaskRunSpec{Timeout: &metav1.Duration{Duration: time.Hour}},
	}
	p, err := b.Build(context.Background(), tr, spec)
	if err != nil {
		t.Fatalf("Tekton's pod builder: %v", err)
	}
	return p
}

func TestParseInvocationOfRenderedSteps(t *testing.T) {
	onErrTimeout := 90 * time.Second
	spec := v1.TaskSpec{
		Results: []v1.TaskResult{{Name: "IMAGE_DIGEST"}, {Name: "IMAGE_URL"}},
		Steps: []v1.Step{{
			Name:    "build",
			Image:   "gcr.io/kaniko-project/executor:v1.24.0",
			Command: []string{"/kaniko/executor"},
			Args:    []string{"--dockerfile=Dockerfile", "--", "--digest-file=$(results.IMAGE_DIGEST.path)"},
			Results: []v1.StepResult{{Name: "size"}},
		}, {
			Name:    "report",
			Image:   "alpine/git",
			Command: []string{"sh", "-c"},
			Args:    []string{"echo done"},
			OnError: v1.Continue,
			Timeout: &metav1.Duration{Duration: onErrTimeout},
		}},
	}
	p := renderPod(t, spec)
	if len(p.Spec.Containers) != 2 {
		t.Fatalf("rendered %d containers", len(p.Spec.Containers))
	}
	var got []*Invocation
	for _, c := range p.Spec.Containers {
		inv, err := ParseInvocation(c.Command, c.Args)
		if err != nil {
			t.Fatalf("container %s: %v", c.Name, err)
		}
		got = append(got, inv)
	}
	want := []*Invocation{{
		// Tekton does not substitute $(results...) itself: the TaskRun
		// reconciler does before building; the builder leaves args alone.
		Command:         []string{"/kaniko/executor", "--dockerfile=Dockerfile", "--", "--digest-file=$(results.IMAGE_DIGEST.path)"},
		WaitFiles:       []string{"/tekton/downward/ready"},
		WaitFileContent: true,
		PostFile:        "/tekton/run/0/out",
		TerminationPath: "/tekton/termination",
		StepMetadataDir: "/tekton/run/0/status",
		Results:         []string{"IMAGE_DIGEST", "IMAGE_URL"},
		StepResults:     []string{"size"},
		ResultFrom:      "termination-message",
	}, {
		Command:         []string{"sh", "-c", "echo done"},
		WaitFiles:       []string{"/tekton/run/0/out"},
		PostFile:        "/tekton/run/1/out",
		TerminationPath: "/tekton/termination",
		StepMetadataDir: "/tekton/run/1/status",
		Results:         []string{"IMAGE_DIGEST", "IMAGE_URL"},
		OnError:         "continue",
		Timeout:         onErrTimeout,
		ResultFrom:      "termination-message",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("invocations (-want +got):\n%s", diff)
	}
}

func TestParseInvocationRejects(t *testing.T) {
	tests := []struct {
		name          string
		command, args []string
		wantErr       bool
		unsupported   []string
	}{
		{"not the entrypoint", []string{"/bin/sh"}, []string{"-c", "true"}, true, nil},
		{"unknown flag", []string{TektonEntrypoint}, []string{"-bogus", "x", "--", "true"}, true, nil},
		{"subcommand", []string{TektonEntrypoint}, []string{"decode-script", "/x"}, true, nil},
		{"credentials", []string{TektonEntrypoint}, []string{"-entrypoint", "true", "-basic-docker=reg=https://r", "--"}, false, []string{"-basic-docker"}},
		{"debug (when expressions are honoured)", []string{TektonEntrypoint}, []string{"-entrypoint", "true", "-breakpoint_on_failure", "--when_expressions", "[]", "--"}, false, []string{"-breakpoint_on_failure"}},
		{"no command", []string{TektonEntrypoint}, []string{"-post_file", "/tekton/run/0/out", "--"}, false, []string{"no -entrypoint (image entrypoint lookup)"}},
		{"sidecar results", []string{TektonEntrypoint}, []string{"-entrypoint", "true", "-result_from", "sidecar-logs", "--"}, false, []string{"-result_from=sidecar-logs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := ParseInvocation(tc.command, tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tc.unsupported, inv.Unsupported, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("unsupported (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePlaceScriptsOfRenderedPod(t *testing.T) {
	scripts := []string{
		"echo \"$(params.x)\" > $HOME/out\n",
		"#!/usr/bin/env bash\nset -euo pipefail\nprintf '%s' \"${A:-$B}\" # dollars and quotes ' \"\n",
		"_EOF_ alone on a line is safe: the heredoc holds base64\n_EOF_\n",
	}
	spec := v1.TaskSpec{}
	for i, s := range scripts {
		spec.Steps = append(spec.Steps, v1.Step{Name: "s" + string(rune('a'+i)), Image: "alpine/git", Script: s})
	}
	p := renderPod(t, spec)
	var place *corev1.Container
	for i := range p.Spec.InitContainers {
		if p.Spec.InitContainers[i].Name == containerPlaceScripts {
			place = &p.Spec.InitContainers[i]
		}
	}
	if place == nil {
		t.Fatal("no place-scripts init container")
	}
	got, err := ParsePlaceScripts(place.Command, place.Args)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(scripts) {
		t.Fatalf("decoded %d scripts, want %d", len(got), len(scripts))
	}
	for i, s := range got {
		want := scripts[i]
		if !strings.HasPrefix(strings.TrimSpace(want), "#!") {
			want = "#!/bin/sh\nset -e\n" + want
		}
		if diff := cmp.Diff(want, string(s.Content)); diff != "" {
			t.Errorf("script %d (-want +got):\n%s", i, diff)
		}
		// The step runs the script file it was given.
		inv, err := ParseInvocation(p.Spec.Containers[i].Command, p.Spec.Containers[i].Args)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{s.Path}, inv.Command); diff != "" {
			t.Errorf("step %d command (-want +got):\n%s", i, diff)
		}
	}
}

func TestParsePlaceScriptsRejectsUnknownShapes(t *testing.T) {
	tests := map[string][]string{
		"not sh":          {"pwsh", "-Command", ""},
		"debug directive": {"sh", "-c", "tmpfile=\"/tekton/debug/scripts/debug-continue\"\ntouch ${tmpfile} && chmod +x ${tmpfile}\ncat > ${tmpfile} << 'x'\necho\nx\n"},
		"outside scripts": {"sh", "-c", "scriptfile=\"/etc/passwd\"\n"},
		"unterminated":    {"sh", "-c", "scriptfile=\"/tekton/scripts/a\"\ntouch ${scriptfile} && chmod +x ${scriptfile}\ncat > ${scriptfile} << '_EOF_'\nZWNobw==\n"},
		"bad base64":      {"sh", "-c", "scriptfile=\"/tekton/scripts/a\"\ntouch ${scriptfile} && chmod +x ${scriptfile}\ncat > ${scriptfile} << '_EOF_'\n!!!\n_EOF_\n/tekton/bin/entrypoint decode-script \"${scriptfile}\"\n"},
	}
	for name, cmdline := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePlaceScripts(cmdline[:1], cmdline[1:]); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestContainerMountsOfRenderedPod maps a rendered step's mounts onto host
// directories and resolves the paths Tekton's entrypoint uses.
func TestContainerMountsOfRenderedPod(t *testing.T) {
	spec := v1.TaskSpec{
		Workspaces: []v1.WorkspaceDeclaration{{Name: "source", MountPath: "/workspace/source"}},
		Steps:      []v1.Step{{Name: "a", Image: "alpine/git", Command: []string{"true"}}, {Name: "b", Image: "alpine/git", Command: []string{"true"}}},
	}
	p := renderPod(t, spec)
	// Workspaces are bound by the TaskRun reconciler; mimic an emptyDir.
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "ws", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	p.Spec.Containers[1].VolumeMounts = append(p.Spec.Containers[1].VolumeMounts, corev1.VolumeMount{Name: "ws", MountPath: "/workspace/source"})
	dir := t.TempDir()
	vols, err := prepareVolumes(context.Background(), fake.NewSimpleClientset(), p, dir, dir)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := vols.containerMounts(&p.Spec.Containers[1], dir+"/term-b")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"/tekton/results/IMAGE_DIGEST", dir + "/volumes/tekton-internal-results/IMAGE_DIGEST"},
		{"/tekton/run/1/out", dir + "/volumes/tekton-internal-run-1/out"},
		{"/tekton/run/0/out", dir + "/volumes/tekton-internal-run-0/out"},
		{"/tekton/termination", dir + "/term-b"},
		{"/workspace/source/Dockerfile", dir + "/volumes/ws/Dockerfile"},
		{"/workspace/other", dir + "/volumes/tekton-internal-workspace/other"},
		{"/tekton/steps/step-a", dir + "/volumes/tekton-internal-steps/step-a"},
	}
	for _, tc := range tests {
		got, err := ms.HostPath(tc.in)
		if err != nil {
			t.Errorf("HostPath(%s): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("HostPath(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if _, err := ms.HostPath("/usr/bin/git"); err == nil {
		t.Error("a path of the image resolved to a host path")
	}
	// The other step's run directory is mounted read-only.
	for _, m := range ms {
		if m.ContainerPath == "/tekton/run/0" && !m.ReadOnly {
			t.Error("/tekton/run/0 is writable in step b")
		}
	}
}
