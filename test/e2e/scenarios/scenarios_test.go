// Package scenarios runs ciel's product scenarios on the e2e harness's
// real cluster: GitLab webhooks posted to the EventListener that Tekton
// Triggers runs as a pod, which calls ciel's interceptor — its Deployment,
// installed from `make release` — as a ClusterInterceptor over TLS; the
// PipelineRuns that follow run on real kubelets, each build on a node of
// its architecture, with the images the release and the suite pushed to
// the cluster's registry.
package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/test/e2e/harness"
)

var suite harness.Suite

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

// world is one test's build namespace with ciel's Triggers side installed
// and its EventListener running.
type world struct {
	env *harness.Env
	ns  string
	// el is the EventListener Service's URL.
	el string
	// since: the interceptor's decisions of this test are logged after it.
	since time.Time
}

// setUp installs ciel's Triggers side from the release into a new
// namespace, as docs/install.md tells a user to, and waits for its
// EventListener.
func setUp(t *testing.T) *world {
	t.Helper()
	env := suite.Env(t)
	ns := env.NewNamespace(t)
	since := time.Now()
	env.InstallBuildNamespace(t, ns)
	return &world{env: env, ns: ns, el: env.EventListenerURL(t, ns, "ciel-gitlab"), since: since}
}

// payload reads a GitLab webhook fixture of interceptor/gitlab/testdata,
// its URLs moved to the suite's GitLab (the webhook comes from the GitLab
// the interceptor knows).
func payload(t *testing.T, env *harness.Env, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "interceptor", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("gitlab.example.com"), []byte(env.GitLab.Host))
}

func (w *world) post(t *testing.T, event, token, delivery string, body []byte) {
	t.Helper()
	h := map[string][]string{
		"X-Gitlab-Event":      {event},
		"X-Gitlab-Token":      {token},
		"X-Gitlab-Event-Uuid": {delivery},
		"Idempotency-Key":     {delivery},
	}
	code, resp, err := harness.Post(context.Background(), w.el, h, body)
	if err != nil {
		t.Fatal(err)
	}
	if code/100 != 2 {
		t.Fatalf("the EventListener answered %d: %s", code, resp)
	}
}

// decisions waits until the interceptor logged at least n decisions on
// delivery for this namespace's triggers (trigger names them if not
// empty) and returns them all.
func (w *world) decisions(t *testing.T, delivery, trigger string, n int) []harness.Decision {
	t.Helper()
	var mine []harness.Decision
	harness.Eventually(t, 90*time.Second, fmt.Sprintf("%d interceptor decision(s) on delivery %s", n, delivery), func(ctx context.Context) (bool, error) {
		all, err := w.env.InterceptorDecisions(ctx, w.since)
		if err != nil {
			return false, err
		}
		mine = mine[:0]
		for _, d := range all {
			if d.Delivery == delivery && strings.HasPrefix(d.Trigger, "namespaces/"+w.ns+"/triggers/"+trigger) {
				mine = append(mine, d)
			}
		}
		return len(mine) >= n, nil
	})
	return mine
}

func (w *world) pipelineRuns(t *testing.T) []pipelinev1.PipelineRun {
	t.Helper()
	l, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// pipelineRunsStay checks for d that the namespace keeps exactly n
// PipelineRuns.
func (w *world) pipelineRunsStay(t *testing.T, n int, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if got := len(w.pipelineRuns(t)); got != n {
			t.Fatalf("%d PipelineRun(s) in the namespace, want %d", got, n)
		}
	}
}

// TestClusterIsSealed: nothing the cluster runs can reach beyond this
// machine. The test binary runs in the cluster's network namespace, which
// has no default route; a pod's attempt to reach an outside address fails
// at once with "Network is unreachable". Nothing is ever sent: the probe
// address is a documentation address (RFC 5737) and the kernel refuses the
// route before a packet exists.
func TestClusterIsSealed(t *testing.T) {
	env := suite.Env(t)
	if out, err := exec.Command("ip", "route", "show", "default").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("the cluster's network namespace has a default route %q (%v)", out, err)
	}
	out, err := exec.Command("ip", "route", "get", harness.SealProbeIP).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Network is unreachable") {
		t.Fatalf("ip route get %s: %q (%v), want Network is unreachable: the pod check below would send a packet", harness.SealProbeIP, out, err)
	}
	ns := env.NewNamespace(t)
	base := env.PushBaseImages(t, env.Registry.Host)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "seal"},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64),
			NodeSelector:                  map[string]string{"kubernetes.io/arch": "amd64"},
			Containers: []corev1.Container{{
				Name: "probe", Image: base + "/busybox:1.35",
				Command: []string{"busybox", "timeout", "5", "wget", "-q", "-O-", "http://" + harness.SealProbeIP + "/"},
			}},
		},
	}
	if _, err := env.Kube.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var done *corev1.Pod
	harness.Eventually(t, 2*time.Minute, "the probe pod to finish", func(ctx context.Context) (bool, error) {
		p, err := env.Kube.CoreV1().Pods(ns).Get(ctx, "seal", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		done = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	logs, err := env.Kube.CoreV1().Pods(ns).GetLogs("seal", &corev1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if done.Status.Phase != corev1.PodFailed || !strings.Contains(string(logs), "Network is unreachable") {
		t.Fatalf("a pod reaching %s: phase %s, log %q; want a failure with Network is unreachable", harness.SealProbeIP, done.Status.Phase, logs)
	}
	t.Logf("pod on %s: %s", done.Spec.NodeName, strings.TrimSpace(string(logs)))
}

func TestRejectedEventsStartNothing(t *testing.T) {
	w := setUp(t)
	forged := payload(t, w.env, "push.json")
	forged = bytes.ReplaceAll(forged, []byte(`"git_http_url": "https://`+w.env.GitLab.Host+`/`), []byte(`"git_http_url": "https://gitlab.evil.example/`))
	cases := []struct {
		name, event, token, code, want string
		body                           []byte
	}{
		{"docs-only push (scenario 2)", "Push Hook", harness.WebhookToken, "FailedPrecondition", "policy build-on-change did not return true", payload(t, w.env, "docs_only_push.json")},
		{"wrong token (scenario 3)", "Push Hook", "wrong", "", "X-Gitlab-Token does not match", payload(t, w.env, "push.json")},
		{"branch deletion (scenario 7)", "Push Hook", harness.WebhookToken, "FailedPrecondition", "policy build-on-change did not return true", payload(t, w.env, "branch_delete.json")},
		{"clone URL on another host", "Push Hook", harness.WebhookToken, "InvalidArgument", "gitlab.evil.example", forged},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			delivery := fmt.Sprintf("rejected-%d", i)
			w.post(t, c.event, c.token, delivery, c.body)
			d := w.decisions(t, delivery, "build-on-push", 1)[0]
			if d.Continue || !strings.Contains(d.Reason, c.want) || (c.code != "" && d.Code != c.code) {
				t.Fatalf("build-on-push: continue %v, %s %q; want a stop (%s) containing %q", d.Continue, d.Code, d.Reason, c.code, c.want)
			}
			w.pipelineRunsStay(t, 0, 3*time.Second)
		})
	}
}

// TestSourcePushStartsOneBuild: a push starts one build-multiarch run of
// the pushed commit, and the same delivery again (scenario 5) adds none —
// whichever interceptor replica the EventListener reaches.
func TestSourcePushStartsOneBuild(t *testing.T) {
	w := setUp(t)
	body := payload(t, w.env, "push.json")
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-1", body)
	prs := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)
	pr := prs[0]
	if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "build-multiarch" {
		t.Errorf("PipelineRun %s runs %+v, want build-multiarch", pr.Name, pr.Spec.PipelineRef)
	}
	if got := param(&pr, "revision"); got != "c95fc90a82e297e2b5fcd3722b931d149a388884" {
		t.Errorf("revision %q, want the pushed commit", got)
	}
	if pr.Labels["ciel.dev/gitlab-sha"] == "" || pr.Labels["ciel.dev/pipeline"] != "build-multiarch" {
		t.Errorf("labels %v", pr.Labels)
	}
	// The build itself is not this test's subject.
	cancelRun(t, w, pr.Name)

	w.post(t, "Push Hook", harness.WebhookToken, "delivery-1", body)
	d := w.decisions(t, "delivery-1", "build-on-push", 2)[1]
	if !d.Continue && !strings.Contains(d.Reason, "duplicate delivery") {
		t.Errorf("the redelivery: %s %q, want a duplicate refused or let through to the same name", d.Code, d.Reason)
	}
	w.pipelineRunsStay(t, 1, 3*time.Second)
	t.Logf("redelivery answered by %s: continue=%v %q; one PipelineRun", d.Pod, d.Continue, d.Reason)
}

// TestRedeliveryOnAnotherReplicaStartsOneRun: GitLab redelivers a push,
// and the interceptor pod that accepted the first copy is gone, so the
// redelivery lands on another replica, whose in-memory dedup has never
// seen it. It lets the push through with the same
// extensions.delivery.name_suffix, the TriggerTemplate names the
// PipelineRun alike, and the API server refuses the second one: one build
// per delivery across replicas and restarts (issue 21, item 7).
func TestRedeliveryOnAnotherReplicaStartsOneRun(t *testing.T) {
	w := setUp(t)
	body := payload(t, w.env, "push.json")
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-replicas", body)
	first := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)[0]
	cancelRun(t, w, first.Name)
	accepted := w.decisions(t, "delivery-replicas", "build-on-push", 1)[0]
	if !accepted.Continue {
		t.Fatalf("the first delivery was refused: %s %q", accepted.Code, accepted.Reason)
	}
	// The replica that accepted it goes away (as in a rolling update).
	if err := w.env.Kube.CoreV1().Pods(harness.InterceptorNamespace).Delete(context.Background(), accepted.Pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w.env.WaitInterceptorPods(t, accepted.Pod)

	w.post(t, "Push Hook", harness.WebhookToken, "delivery-replicas", body)
	harness.Eventually(t, 90*time.Second, "the redelivery accepted by another replica", func(ctx context.Context) (bool, error) {
		all, err := w.env.InterceptorDecisions(ctx, w.since)
		if err != nil {
			return false, err
		}
		for _, d := range all {
			if d.Delivery == "delivery-replicas" && d.Continue && d.Pod != accepted.Pod && strings.Contains(d.Trigger, "/"+w.ns+"/") {
				t.Logf("redelivery accepted by %s (the first by %s)", d.Pod, accepted.Pod)
				return true, nil
			}
		}
		return false, nil
	})
	w.pipelineRunsStay(t, 1, 3*time.Second)
	if got := w.pipelineRuns(t)[0].Name; got != first.Name {
		t.Fatalf("PipelineRun %s after the redelivery, want only %s", got, first.Name)
	}
}

// TestInterceptorRestartKeepsTheEventListenerWorking: every interceptor
// pod restarted (a rollout) → the new pods serve the certificate the
// ClusterInterceptor's caBundle names (kept in the TLS Secret), and the
// EventListener's next webhook gets a decision.
func TestInterceptorRestartKeepsTheEventListenerWorking(t *testing.T) {
	w := setUp(t)
	before := w.env.ClusterInterceptorCABundle(t)
	w.env.RestartInterceptor(t)
	if after := w.env.ClusterInterceptorCABundle(t); after != before {
		t.Errorf("the caBundle changed across a restart")
	}
	w.post(t, "Push Hook", harness.WebhookToken, "after-restart", payload(t, w.env, "docs_only_push.json"))
	d := w.decisions(t, "after-restart", "build-on-push", 1)[0]
	if d.Continue || !strings.Contains(d.Reason, "policy build-on-change did not return true") {
		t.Fatalf("after a restart: %s %q, want the policy's answer", d.Code, d.Reason)
	}
}

// TestPolicyChangeTakesEffectWithoutRestart: the policies ConfigMap
// edited → the kubelet updates the pods' volume, the interceptor reloads
// it, and the next webhook is decided by the new policy, with no pod
// restarted.
func TestPolicyChangeTakesEffectWithoutRestart(t *testing.T) {
	w := setUp(t)
	pods := w.env.InterceptorPods(t)
	restore := w.env.EditPolicy(t, "build-on-change", func(doc map[string]any) {
		// Build on every push: the docs-only push now continues.
		doc["filter"] = "extensions.push.is_branch && !extensions.push.is_delete"
	})
	defer restore()
	n := 0
	harness.Eventually(t, 3*time.Minute, "the new policy deciding", func(ctx context.Context) (bool, error) {
		n++
		delivery := fmt.Sprintf("policy-edit-%d", n)
		w.post(t, "Push Hook", harness.WebhookToken, delivery, payload(t, w.env, "docs_only_push.json"))
		ds := w.decisions(t, delivery, "build-on-push", 1)
		return ds[0].Continue, nil
	})
	if got := w.env.InterceptorPods(t); !slices.Equal(got, pods) {
		t.Errorf("interceptor pods %v after the edit, want the same %v (no restart)", got, pods)
	}
	t.Logf("the edited policy decided after %d webhook(s)", n)
}

// TestTruncatedPushAsksGitLabOnce is scenario 4: GitLab lists 20 of a
// push's 25 commits; the interceptor completes the changed files from the
// GitLab API (the suite's GitLab, its compare API) once, and decides on
// the complete list.
func TestTruncatedPushAsksGitLabOnce(t *testing.T) {
	w := setUp(t)
	body := payload(t, w.env, "truncated_push.json")
	var push struct {
		Before    string `json:"before"`
		After     string `json:"after"`
		ProjectID int    `json:"project_id"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		t.Fatal(err)
	}
	w.env.GitLab.SetCompare(fmt.Sprint(push.ProjectID), push.Before, push.After, []gitlabtest.Diff{
		{OldPath: "src/ledger/export.go", NewPath: "src/ledger/export.go"},
	})
	_, compares := w.env.GitLab.Requests()
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-truncated", body)
	pr := w.env.WaitPipelineRuns(t, w.ns, 1, 90*time.Second)[0]
	cancelRun(t, w, pr.Name)
	if got := pr.Annotations["ciel.dev/changed-files-source"]; got != "api" {
		t.Errorf("changed files source %q, want api", got)
	}
	if got := pr.Annotations["ciel.dev/changed-files-count"]; got != "1" {
		t.Errorf("changed files count %q, want the API's 1", got)
	}
	// The release and merge request triggers also saw the push (and
	// refused it by event type) without asking GitLab: one compare in all.
	w.decisions(t, "delivery-truncated", "", 3)
	if _, n := w.env.GitLab.Requests(); n-compares != 1 {
		t.Errorf("GitLab compare API called %d times, want 1", n-compares)
	}
}

// cancelRun cancels a PipelineRun whose build is not the test's subject.
func cancelRun(t *testing.T, w *world, name string) {
	t.Helper()
	patch := []byte(`{"spec":{"status":"Cancelled"}}`)
	if _, err := w.env.Tekton.TektonV1().PipelineRuns(w.ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func param(pr *pipelinev1.PipelineRun, name string) string {
	for _, p := range pr.Spec.Params {
		if p.Name == name {
			return p.Value.StringVal
		}
	}
	return ""
}

// pushFor rewrites the push fixture for a branch, a commit and the
// project's clone URL.
func pushFor(t *testing.T, env *harness.Env, p *project, branch, sha string) []byte {
	t.Helper()
	return fixtureFor(t, env, p, "push.json", "refs/heads/"+branch, sha, func(m map[string]any) {
		m["after"] = sha
		commits := m["commits"].([]any)
		commits[len(commits)-1].(map[string]any)["id"] = sha
	})
}

// tagPushFor rewrites the tag push fixture for a tag of a commit.
func tagPushFor(t *testing.T, env *harness.Env, p *project, sha, tag string) []byte {
	t.Helper()
	return fixtureFor(t, env, p, "tag_push.json", "refs/tags/"+tag, sha, func(m map[string]any) {
		if commits, ok := m["commits"].([]any); ok && len(commits) > 0 {
			commits[0].(map[string]any)["id"] = sha
		}
	})
}

// fixtureFor rewrites the payload fixture file for ref, checkout_sha sha
// and the project's clone URL, then applies edit.
func fixtureFor(t *testing.T, env *harness.Env, p *project, file, ref, sha string, edit func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(payload(t, env, file), &m); err != nil {
		t.Fatal(err)
	}
	m["ref"] = ref
	m["checkout_sha"] = sha
	m["project"].(map[string]any)["git_http_url"] = p.cloneURL
	edit(m)
	b, _ := json.Marshal(m)
	return b
}

// TestSourcePushBuildsMultiArchIndex follows a push of the test project
// (testdata/hello) through the whole product on real nodes: Kaniko builds
// linux/amd64 on the amd64 node and linux/arm64 on the arm64 node, each
// RUN recording the machine it ran on; the merge pushes the OCI index; a
// second delivery rebuilds from the per-platform Kaniko caches and gets
// the same digests, as does a rebuild with an empty cache
// (--reproducible); tag pushes then release the index without a rebuild,
// forward only; and a branch named "latest" cannot move the latest tag.
func TestSourcePushBuildsMultiArchIndex(t *testing.T) {
	w := setUp(t)
	env := w.env
	base := env.PushBaseImages(t, env.Registry.Host)
	p, sha := newProject(t, env, base)
	image := env.BuildRegistry(w.ns) + "/" + projectPath

	start := time.Now()
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-build", pushFor(t, env, p, "main", sha))
	first := w.waitNewRun(t, nil)
	t.Logf("push to finished multi-arch index (cold Kaniko caches): %s", time.Since(start).Round(time.Millisecond))
	cold := w.buildPods(t, first.Name)

	// The index under the commit tag sha-<SHA> holds exactly linux/amd64
	// and linux/arm64, each child's config saying so, with the program
	// built for it, and what its RUN recorded on its node.
	idx, err := remote.Index(mustRef(t, image+":sha-"+sha))
	if err != nil {
		t.Fatalf("reading the index: %v", err)
	}
	indexDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := pipelineResult(first, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the PipelineRun's IMAGE_DIGEST is %q, the tag points at %s", got, indexDigest)
	}
	children := indexChildren(t, idx)
	if got := slices.Sorted(maps.Keys(children)); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("index children %v, want linux/amd64 and linux/arm64", children)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := idx.Image(children["linux/"+arch])
		if err != nil {
			t.Fatal(err)
		}
		machine := checkHelloImage(t, img, arch)
		b := cold[arch]
		fmt.Printf("build pod %s node=%s arch=%s image-arch=%s\n", b.pod, b.node, b.nodeArch, machine)
	}

	// Cold builds look up their own platform's cache repository only, and
	// find nothing there.
	for arch, b := range cold {
		repos, hits := cacheLookups(b.log)
		if want := image + "/cache-linux-" + arch; len(repos) != 1 || repos[0] != want {
			t.Errorf("cold %s build looked up cached layers in %v, want only %s", arch, repos, want)
		}
		if hits != 0 {
			t.Errorf("cold %s build used %d cached layers", arch, hits)
		}
	}

	// A second delivery of the push (a new webhook, same commit) runs the
	// pipeline again: every platform's build hits its own cache, and the
	// result is the same images and index.
	start = time.Now()
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-build-again", pushFor(t, env, p, "main", sha))
	second := w.waitNewRun(t, []string{first.Name})
	t.Logf("push to finished multi-arch index (warm Kaniko caches): %s", time.Since(start).Round(time.Millisecond))
	for arch, b := range w.buildPods(t, second.Name) {
		repos, hits := cacheLookups(b.log)
		if want := image + "/cache-linux-" + arch; len(repos) != 1 || repos[0] != want {
			t.Errorf("cached %s build looked up cached layers in %v, want only %s", arch, repos, want)
		}
		if hits == 0 {
			t.Errorf("the second %s build used no cached layer:\n%s", arch, b.log)
		}
		t.Logf("kaniko build linux/%s: cold %s, cached %s (%d cached layers)", arch,
			cold[arch].took.Round(time.Millisecond), b.took.Round(time.Millisecond), hits)
	}
	if got := pipelineResult(second, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the cached rebuild's index is %s, want the first run's %s", got, indexDigest)
	}
	amdLayers := cacheLayers(t, image+"/cache-linux-amd64")
	armLayers := cacheLayers(t, image+"/cache-linux-arm64")
	if len(amdLayers) == 0 || len(armLayers) == 0 {
		t.Errorf("cache layers: %d for amd64, %d for arm64; want some for both", len(amdLayers), len(armLayers))
	}
	for l := range amdLayers {
		if armLayers[l] {
			t.Errorf("layer %s is cached for both platforms", l)
		}
	}

	// --reproducible: the same commit rebuilt from scratch (an empty cache
	// repository) gives the same images, hence the same index.
	fresh := first.DeepCopy()
	fresh.ObjectMeta = metav1.ObjectMeta{Name: "rebuild-without-cache", Namespace: w.ns, Labels: first.Labels, Annotations: first.Annotations}
	fresh.Status = pipelinev1.PipelineRunStatus{}
	setParam(fresh, "cache-repo", image+"/fresh-cache")
	if _, err := env.Tekton.TektonV1().PipelineRuns(w.ns).Create(context.Background(), fresh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	third := env.WaitPipelineRunDone(t, w.ns, fresh.Name, 15*time.Minute)
	if c := third.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
		t.Fatalf("PipelineRun %s: %+v", third.Name, c)
	}
	for arch, b := range w.buildPods(t, third.Name) {
		if _, hits := cacheLookups(b.log); hits != 0 {
			t.Errorf("the rebuild without cache used %d cached layers for %s", hits, arch)
		}
		t.Logf("kaniko build linux/%s without cache: %s", arch, b.took.Round(time.Millisecond))
	}
	if got := pipelineResult(third, "IMAGE_DIGEST"); got != indexDigest.String() {
		t.Errorf("the rebuild without cache made index %s, want %s", got, indexDigest)
	}

	// Scenario 6: tag pushes release the index just built, without a rebuild.
	release := func(tag string) {
		t.Helper()
		var seen []string
		for _, pr := range w.pipelineRuns(t) {
			seen = append(seen, pr.Name)
		}
		w.post(t, "Tag Push Hook", harness.WebhookToken, "delivery-"+tag, tagPushFor(t, env, p, sha, tag))
		pr := w.waitNewRun(t, seen)
		if pr.Spec.PipelineRef == nil || pr.Spec.PipelineRef.Name != "release" || pr.Annotations["ciel.dev/gitlab-ref"] != "refs/tags/"+tag {
			t.Fatalf("tag %s started %s (%+v, ref %q), want the release pipeline", tag, pr.Name, pr.Spec.PipelineRef, pr.Annotations["ciel.dev/gitlab-ref"])
		}
	}
	digestOf := func(tag string) string {
		t.Helper()
		d, err := remote.Head(mustRef(t, image+":"+tag))
		if err != nil {
			return "absent"
		}
		return d.Digest.String()
	}
	builds := w.archPods(t)
	release("v1.2.3")
	for _, tag := range []string{"v1.2.3", "v1.2", "v1", "latest"} {
		if got := digestOf(tag); got != indexDigest.String() {
			t.Errorf("after v1.2.3: %s is %s, want the built index %s", tag, got, indexDigest)
		}
	}
	release("v1.1.9")
	if got := digestOf("v1.1"); got != indexDigest.String() {
		t.Errorf("after v1.1.9: v1.1 is %s, want %s", got, indexDigest)
	}
	for _, tag := range []string{"v1", "latest", "v1.2"} {
		if got := digestOf(tag); got != indexDigest.String() {
			t.Errorf("after v1.1.9: %s moved to %s", tag, got)
		}
	}
	if got := w.archPods(t); got != builds {
		t.Errorf("%d build pods after the releases, want the %d of the branch builds", got, builds)
	}

	// A branch named "latest" builds under branch-latest; the latest tag
	// stays on the release.
	latestSHA := p.commit(t, "latest", "NOTES", "a branch named latest\n")
	var seen []string
	for _, pr := range w.pipelineRuns(t) {
		seen = append(seen, pr.Name)
	}
	w.post(t, "Push Hook", harness.WebhookToken, "delivery-branch-latest", pushFor(t, env, p, "latest", latestSHA))
	w.waitNewRun(t, seen)
	if got := digestOf("latest"); got != indexDigest.String() {
		t.Errorf("after a push to branch latest, the latest tag is %s, want the release's %s", got, indexDigest)
	}
	if got, other := digestOf("branch-latest"), digestOf("sha-"+latestSHA); got == "absent" || got != other || got == indexDigest.String() {
		t.Errorf("branch latest built %s under branch-latest and %s under its commit tag; want one new index under both", got, other)
	}
}

// waitNewRun waits for a PipelineRun not named in seen, then for it to
// succeed, and returns it.
func (w *world) waitNewRun(t *testing.T, seen []string) *pipelinev1.PipelineRun {
	t.Helper()
	prs := w.env.WaitPipelineRuns(t, w.ns, len(seen)+1, 90*time.Second)
	for _, p := range prs {
		if slices.Contains(seen, p.Name) {
			continue
		}
		pr := w.env.WaitPipelineRunDone(t, w.ns, p.Name, 15*time.Minute)
		if c := pr.Status.GetCondition(apis.ConditionSucceeded); c == nil || c.Status != corev1.ConditionTrue {
			t.Fatalf("PipelineRun %s: %+v", pr.Name, c)
		}
		return pr
	}
	t.Fatalf("no new PipelineRun besides %v", seen)
	return nil
}

// buildPod is one kaniko-build pod of a PipelineRun, as the cluster ran it.
type buildPod struct {
	pod, node, nodeArch string
	took                time.Duration
	log                 string
}

// buildPods returns the kaniko-build pods of a PipelineRun by the
// architecture they were built for; it fails unless there is exactly one
// per architecture, each on a node of that architecture (as the node's
// kubelet labelled itself).
func (w *world) buildPods(t *testing.T, pipelineRun string) map[string]buildPod {
	t.Helper()
	ctx := context.Background()
	pods, err := w.env.Kube.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pipelineRun})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]buildPod{}
	for _, p := range pods.Items {
		arch := p.Spec.NodeSelector["kubernetes.io/arch"]
		if arch == "" {
			continue
		}
		node, err := w.env.Kube.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s: node %q: %v", p.Name, p.Spec.NodeName, err)
		}
		b := buildPod{pod: p.Name, node: node.Name, nodeArch: node.Labels["kubernetes.io/arch"]}
		if b.nodeArch != arch || node.Status.NodeInfo.Architecture != arch {
			t.Errorf("pod %s builds linux/%s on node %s (arch label %q, kubelet %s)", p.Name, arch, node.Name, b.nodeArch, node.Status.NodeInfo.Architecture)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name != "step-build" {
				continue
			}
			if term := cs.State.Terminated; term != nil {
				b.took = term.FinishedAt.Sub(term.StartedAt.Time)
				if term.ExitCode != 0 {
					t.Errorf("%s: the build step of %s exited %d", pipelineRun, p.Name, term.ExitCode)
				}
			}
		}
		raw, err := w.env.Kube.CoreV1().Pods(w.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: "step-build"}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("the build log of %s: %v", p.Name, err)
		}
		b.log = ansi.ReplaceAllString(string(raw), "")
		if _, dup := out[arch]; dup {
			t.Errorf("%s: two builds for %s", pipelineRun, arch)
		}
		out[arch] = b
	}
	if len(out) != 2 || out["amd64"].log == "" || out["arm64"].log == "" {
		t.Fatalf("%s: builds for %d architectures, want amd64 and arm64", pipelineRun, len(out))
	}
	return out
}

// archPods counts the namespace's pods pinned to an architecture (builds).
func (w *world) archPods(t *testing.T) int {
	t.Helper()
	pods, err := w.env.Kube.CoreV1().Pods(w.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.NodeSelector["kubernetes.io/arch"] != "" {
			n++
		}
	}
	return n
}

func pipelineResult(pr *pipelinev1.PipelineRun, name string) string {
	for _, r := range pr.Status.Results {
		if r.Name == name {
			return r.Value.StringVal
		}
	}
	return ""
}

func setParam(pr *pipelinev1.PipelineRun, name, value string) {
	for i, p := range pr.Spec.Params {
		if p.Name == name {
			pr.Spec.Params[i].Value = *pipelinev1.NewStructuredValues(value)
			return
		}
	}
	pr.Spec.Params = append(pr.Spec.Params, pipelinev1.Param{Name: name, Value: *pipelinev1.NewStructuredValues(value)})
}

// indexChildren maps each child's platform (as its config states it,
// checked against the index's descriptor) to its digest.
func indexChildren(t *testing.T, idx v1.ImageIndex) map[string]v1.Hash {
	t.Helper()
	children, err := harness.IndexChildren(idx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Hash{}
	for _, c := range children {
		out[c.Platform] = c.Digest
	}
	return out
}

var (
	ansi          = regexp.MustCompile(`\x1b\[[0-9;]*m`)
	cacheCheckLog = regexp.MustCompile(`Checking for cached layer (\S+)\.\.\.`)
)

// cacheLookups returns the cache repositories a Kaniko log shows lookups
// in, and how many commands it took from the cache.
func cacheLookups(log string) (repos []string, hits int) {
	for _, m := range cacheCheckLog.FindAllStringSubmatch(log, -1) {
		repo := m[1]
		if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		if !slices.Contains(repos, repo) {
			repos = append(repos, repo)
		}
	}
	return repos, strings.Count(log, "Using caching version of cmd")
}

// cacheLayers returns the digests of the layers Kaniko cached in repo.
func cacheLayers(t *testing.T, repo string) map[string]bool {
	t.Helper()
	r, err := name.NewRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r)
	if err != nil {
		t.Fatalf("listing %s: %v", repo, err)
	}
	out := map[string]bool{}
	for _, tag := range tags {
		img, err := remote.Image(r.Tag(tag))
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			out[d.String()] = true
		}
	}
	return out
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
