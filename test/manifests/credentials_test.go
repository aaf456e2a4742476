package manifests

import (
	"slices"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
)

// TestCredentialsReachOnlyTheStepsThatNeedThem binds every workspace of
// kaniko-build and mounts them with Tekton's own workspace code, as the
// TaskRun reconciler does: the Git credentials (git-auth) reach only the
// clone steps and the registry credentials (dockerconfig) only the Kaniko
// step; the Kaniko step, which runs the Dockerfile's RUN lines as root,
// never sees the .netrc. No other step names git-auth's path.
func TestCredentialsReachOnlyTheStepsThatNeedThem(t *testing.T) {
	o := decodeAll(t)
	ctx := validationContext(t)
	task, ok := defaulted(ctx, o.tasks)["kaniko-build"]
	if !ok {
		t.Fatal("no Task kaniko-build")
	}
	if err := task.Validate(ctx); err != nil {
		t.Fatalf("kaniko-build: %v", err)
	}
	wb := []pipelinev1.WorkspaceBinding{
		{Name: "source", EmptyDir: &corev1.EmptyDirVolumeSource{}},
		{Name: "dockerconfig", Secret: &corev1.SecretVolumeSource{SecretName: "ciel-registry-credentials"}},
		{Name: "ca-bundle", ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "registry-ca"}}},
		{Name: "git-auth", Secret: &corev1.SecretVolumeSource{SecretName: "ciel-git-credentials"}},
	}
	vols := workspace.CreateVolumes(wb)
	ts, err := workspace.Apply(ctx, task.Spec, wb, vols)
	if err != nil {
		t.Fatal(err)
	}
	mountedIn := func(ws string) []string {
		var steps []string
		for _, s := range ts.Steps {
			mounts := append(slices.Clone(ts.StepTemplate.VolumeMounts), s.VolumeMounts...)
			if slices.ContainsFunc(mounts, func(m corev1.VolumeMount) bool { return m.Name == vols[ws].Name }) {
				steps = append(steps, s.Name)
			}
		}
		return steps
	}
	var clones []string
	for _, s := range ts.Steps {
		if strings.HasPrefix(s.Name, "clone-") {
			clones = append(clones, s.Name)
		}
	}
	if len(clones) == 0 {
		t.Fatal("kaniko-build has no clone steps")
	}
	if got := mountedIn("git-auth"); !slices.Equal(got, clones) {
		t.Errorf("git-auth is mounted in %v, want only the clone steps %v", got, clones)
	}
	if got := mountedIn("dockerconfig"); !slices.Equal(got, []string{"build"}) {
		t.Errorf("dockerconfig is mounted in %v, want only the Kaniko step build", got)
	}
	if got := mountedIn("source"); !slices.Contains(got, "build") {
		t.Errorf("source is mounted in %v, not in build", got)
	}
	for _, s := range task.Spec.Steps {
		if strings.HasPrefix(s.Name, "clone-") {
			continue
		}
		text := strings.Join(append(append(slices.Clone(s.Command), s.Args...), s.Script), " ")
		for _, e := range s.Env {
			text += " " + e.Value
		}
		if strings.Contains(text, "workspaces.git-auth") {
			t.Errorf("step %s refers to the git-auth workspace", s.Name)
		}
	}
	// git may use https only, unless the http variant of the fetch runs.
	for _, s := range task.Spec.Steps {
		for _, e := range s.Env {
			if e.Name != "GIT_ALLOW_PROTOCOL" {
				continue
			}
			want := "https"
			if s.Name == "clone-fetch-http" {
				want = "https:http"
			}
			if e.Value != want {
				t.Errorf("step %s: GIT_ALLOW_PROTOCOL = %q, want %q", s.Name, e.Value, want)
			}
		}
	}
}
