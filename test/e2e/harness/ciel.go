package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// InterceptorSelector selects the interceptor Deployment's pods.
const InterceptorSelector = "app.kubernetes.io/name=ciel-interceptor"

// WebhookToken is the secret token of the GitLab webhook the scenarios
// install (the Secret ciel-gitlab-webhook of docs/install.md, step 5).
const WebhookToken = "s3cret"

// InstallBuildNamespace installs ciel's Triggers side (EventListener,
// bindings, templates, Tasks, Pipelines, ServiceAccount and RoleBindings)
// from dist/release.yaml into ns, moved there as docs/install.md's
// "Choose the namespace" does, and makes the edits its steps 5 and 6 tell
// a user to make: the webhook Secret, the registry in the binding
// ciel-registry, the Kaniko and git images from the cluster's registry as
// the TriggerTemplates' image params (the release's defaults are public
// images this sealed cluster cannot pull), and the Secret
// ciel-git-credentials naming the suite's GitLab CA for the clone.
func (e *Env) InstallBuildNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx := testContext(t)
	objs := ForNamespace(e.ReleaseObjects, ns)
	if err := e.Installer.Apply(ctx, objs); err != nil {
		t.Fatalf("installing ciel's Triggers side into %s: %v", ns, err)
	}
	t.Cleanup(func() {
		for _, o := range objs {
			if o.GetKind() == "ClusterRoleBinding" {
				_ = e.Kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), o.GetName(), metav1.DeleteOptions{})
			}
		}
	})
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ciel-gitlab-webhook"},
		StringData: map[string]string{"token": WebhookToken},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gitconfig := fmt.Sprintf("[http %q]\n\tsslCAInfo = /workspace/git-auth/ca.crt\n", e.GitLab.BaseURL+"/")
	if _, err := e.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "ciel-git-credentials"},
		StringData: map[string]string{".gitconfig": gitconfig, "ca.crt": string(e.GitLab.CAPEM)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.SetBinding(t, ns, map[string]string{"registry": e.BuildRegistry(ns)})
	for _, tt := range []string{"ciel-build-multiarch", "ciel-release", "ciel-build-merge-request"} {
		e.setTemplateDefaults(t, ns, tt, map[string]string{"builder-image": e.Images.Kaniko.String(), "git-image": e.Images.Git.String()})
	}
}

// BuildRegistry is where the builds of namespace ns push: a prefix of its
// own in the cluster's registry, whose storage outlives runs, so that no
// run finds another's images or Kaniko cache layers.
func (e *Env) BuildRegistry(ns string) string { return e.Registry.Host + "/" + ns }

// SetBinding sets params of the TriggerBinding ciel-registry in ns (adding
// those it does not have).
func (e *Env) SetBinding(t testing.TB, ns string, params map[string]string) {
	t.Helper()
	ctx := testContext(t)
	b, err := e.Triggers.TriggersV1beta1().TriggerBindings(ns).Get(ctx, "ciel-registry", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		found := false
		for i := range b.Spec.Params {
			if b.Spec.Params[i].Name == k {
				b.Spec.Params[i].Value = params[k]
				found = true
			}
		}
		if !found {
			b.Spec.Params = append(b.Spec.Params, b.Spec.Params[0])
			b.Spec.Params[len(b.Spec.Params)-1].Name, b.Spec.Params[len(b.Spec.Params)-1].Value = k, params[k]
		}
	}
	if _, err := e.Triggers.TriggersV1beta1().TriggerBindings(ns).Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// setTemplateDefaults changes the defaults of a TriggerTemplate's params
// (docs/install.md: "Images from a mirror").
func (e *Env) setTemplateDefaults(t testing.TB, ns, name string, defaults map[string]string) {
	t.Helper()
	ctx := testContext(t)
	tt, err := e.Triggers.TriggersV1beta1().TriggerTemplates(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set := 0
	for i, p := range tt.Spec.Params {
		if v, ok := defaults[p.Name]; ok {
			v := v
			tt.Spec.Params[i].Default = &v
			set++
		}
	}
	if set != len(defaults) {
		t.Fatalf("TriggerTemplate %s/%s lacks some of the params %v", ns, name, defaults)
	}
	if _, err := e.Triggers.TriggersV1beta1().TriggerTemplates(ns).Update(ctx, tt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// EventListenerURL waits until Tekton Triggers runs the EventListener
// ns/name (its Deployment available) and returns its Service's URL, as
// reachable from the cluster's network namespace.
func (e *Env) EventListenerURL(t testing.TB, ns, name string) string {
	t.Helper()
	ctx := testContext(t)
	dep := &unstructured.Unstructured{}
	dep.SetKind("Deployment")
	dep.SetNamespace(ns)
	dep.SetName("el-" + name)
	Eventually(t, 60*time.Second, "the Deployment el-"+name, func(ctx context.Context) (bool, error) {
		_, err := e.Kube.AppsV1().Deployments(ns).Get(ctx, "el-"+name, metav1.GetOptions{})
		return err == nil, err
	})
	if err := e.Installer.WaitDeployments(ctx, 3*time.Minute, []*unstructured.Unstructured{dep}); err != nil {
		t.Fatal(err)
	}
	svc, err := e.Kube.CoreV1().Services(ns).Get(ctx, "el-"+name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := int32(8080)
	for _, p := range svc.Spec.Ports {
		if p.Name == "http-listener" || len(svc.Spec.Ports) == 1 {
			port = p.Port
		}
	}
	url := "http://" + svc.Spec.ClusterIP + ":" + strconv.Itoa(int(port))
	// Available is not reachable yet: the Service's endpoints and
	// kube-proxy's rules follow the pod's readiness.
	hc := &http.Client{Timeout: 2 * time.Second}
	Eventually(t, 60*time.Second, "the EventListener answering at "+url, func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, url+"/live")
	})
	return url
}

// Decision is one decision of the interceptor, from its structured log.
type Decision struct {
	Time     time.Time
	Pod      string
	Continue bool
	Code     string
	Reason   string
	Delivery string
	Trigger  string
}

// InterceptorDecisions reads every decision the interceptor's pods logged
// since since, through the API server (the kubelets serve the logs), in
// time order. Only the pods that exist now are read.
func (e *Env) InterceptorDecisions(ctx context.Context, since time.Time) ([]Decision, error) {
	pods, err := e.Kube.CoreV1().Pods(InterceptorNamespace).List(ctx, metav1.ListOptions{LabelSelector: InterceptorSelector})
	if err != nil {
		return nil, err
	}
	st := metav1.NewTime(since.Add(-time.Second))
	var out []Decision
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		raw, err := e.Kube.CoreV1().Pods(InterceptorNamespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "interceptor", SinceTime: &st}).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the log of %s: %w", p.Name, err)
		}
		out = append(out, parseDecisions(p.Name, raw, since)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

func parseDecisions(pod string, raw []byte, since time.Time) []Decision {
	var out []Decision
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Time     time.Time `json:"time"`
			Msg      string    `json:"msg"`
			Code     string    `json:"code"`
			Reason   string    `json:"reason"`
			Delivery string    `json:"delivery"`
			Trigger  string    `json:"trigger"`
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || (l.Msg != "continue" && l.Msg != "stop") || l.Time.Before(since) {
			continue
		}
		out = append(out, Decision{Time: l.Time, Pod: pod, Continue: l.Msg == "continue", Code: l.Code, Reason: l.Reason, Delivery: l.Delivery, Trigger: l.Trigger})
	}
	return out
}

// PatchDeploymentArgs appends args to the first container of a Deployment
// (docs/install.md, step 7) and waits for the rollout.
func (e *Env) PatchDeploymentArgs(ctx context.Context, ns, name string, args ...string) error {
	var ops []string
	for _, a := range args {
		b, _ := json.Marshal(a)
		ops = append(ops, `{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":`+string(b)+`}`)
	}
	_, err := e.Kube.AppsV1().Deployments(ns).Patch(ctx, name, types.JSONPatchType, []byte("["+strings.Join(ops, ",")+"]"), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("patching deployment %s/%s: %w", ns, name, err)
	}
	dep := &unstructured.Unstructured{}
	dep.SetKind("Deployment")
	dep.SetNamespace(ns)
	dep.SetName(name)
	return e.Installer.WaitDeployments(ctx, 3*time.Minute, []*unstructured.Unstructured{dep})
}

// InterceptorPods returns the names of the interceptor's running pods,
// sorted.
func (e *Env) InterceptorPods(t testing.TB) []string {
	t.Helper()
	pods, err := e.Kube.CoreV1().Pods(InterceptorNamespace).List(testContext(t), metav1.ListOptions{LabelSelector: InterceptorSelector})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// WaitInterceptorPods waits until the interceptor Deployment is available
// again with none of the pods named gone among its pods.
func (e *Env) WaitInterceptorPods(t testing.TB, gone ...string) {
	t.Helper()
	Eventually(t, 3*time.Minute, "the interceptor's pods replaced", func(ctx context.Context) (bool, error) {
		d, err := e.Kube.AppsV1().Deployments(InterceptorNamespace).Get(ctx, "ciel-interceptor", metav1.GetOptions{})
		if err != nil || !deploymentReady(d) {
			return false, err
		}
		pods, err := e.Kube.CoreV1().Pods(InterceptorNamespace).List(ctx, metav1.ListOptions{LabelSelector: InterceptorSelector})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, g := range gone {
				if p.Name == g {
					return false, nil
				}
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == int(*d.Spec.Replicas), nil
	})
}

// RestartInterceptor restarts every interceptor pod as `kubectl rollout
// restart` does and waits for the new ones.
func (e *Env) RestartInterceptor(t testing.TB) {
	t.Helper()
	old := e.InterceptorPods(t)
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := e.Kube.AppsV1().Deployments(InterceptorNamespace).Patch(testContext(t), "ciel-interceptor", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.WaitInterceptorPods(t, old...)
}

// ClusterInterceptorCABundle returns the caBundle of the ClusterInterceptor
// ciel.
func (e *Env) ClusterInterceptorCABundle(t testing.TB) string {
	t.Helper()
	ci, err := e.Dynamic.Resource(clusterInterceptorGVR).Get(testContext(t), "ciel", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := unstructured.NestedString(ci.Object, "spec", "clientConfig", "caBundle")
	if b == "" {
		t.Fatal("the ClusterInterceptor ciel has no caBundle")
	}
	return b
}

// EditPolicy changes the named policy in the ConfigMap ciel-policies (the
// file <name>.yaml) with edit, dropping its test cases, and returns a
// function restoring it.
func (e *Env) EditPolicy(t testing.TB, name string, edit func(doc map[string]any)) (restore func()) {
	t.Helper()
	ctx := testContext(t)
	cms := e.Kube.CoreV1().ConfigMaps(InterceptorNamespace)
	cm, err := cms.Get(ctx, "ciel-policies", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := name + ".yaml"
	orig, ok := cm.Data[key]
	if !ok {
		t.Fatalf("the ConfigMap ciel-policies has no %s", key)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(orig), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "tests")
	edit(doc)
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[key] = string(b)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return func() {
		cm, err := cms.Get(context.Background(), "ciel-policies", metav1.GetOptions{})
		if err != nil {
			t.Errorf("restoring policy %s: %v", name, err)
			return
		}
		cm.Data[key] = orig
		if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
			t.Errorf("restoring policy %s: %v", name, err)
		}
	}
}

// InstallReporter installs the reporter from dist/reporter.yaml watching
// ns, with docs/install.md's edits (step 10): its GitLab token Secret,
// --gitlab-url, and the GitLab's CA through --gitlab-ca-file; it waits
// until the reporter is ready and removes it when the test ends.
func (e *Env) InstallReporter(t testing.TB, ns string) {
	t.Helper()
	ctx := testContext(t)
	f, err := os.Open(e.Release.ReporterFile)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeYAML(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch {
		case o.GetKind() == "RoleBinding" && o.GetNamespace() == ReleaseNamespace:
			o.SetNamespace(ns)
		case o.GetKind() == "Deployment":
			editReporterDeployment(t, o, ns, e.GitLab.BaseURL)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ciel-reporter-gitlab-ca"}, Data: map[string]string{"ca.crt": string(e.GitLab.CAPEM)}}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ciel-reporter-gitlab"}, StringData: map[string]string{"token": GitLabToken}}
	if _, err := e.Kube.CoreV1().ConfigMaps(InterceptorNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Kube.CoreV1().Secrets(InterceptorNamespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_ = e.Kube.AppsV1().Deployments(InterceptorNamespace).Delete(bg, "ciel-reporter", metav1.DeleteOptions{})
		_ = e.Kube.CoreV1().ConfigMaps(InterceptorNamespace).Delete(bg, cm.Name, metav1.DeleteOptions{})
		_ = e.Kube.CoreV1().Secrets(InterceptorNamespace).Delete(bg, sec.Name, metav1.DeleteOptions{})
	})
	if err := e.Installer.Apply(ctx, objs); err != nil {
		t.Fatalf("installing the reporter: %v", err)
	}
	if err := e.Installer.WaitDeployments(ctx, 3*time.Minute, objs); err != nil {
		t.Fatal(err)
	}
}

// editReporterDeployment makes the edits of docs/install.md, step 10, to
// the reporter's Deployment: the namespace it watches, the GitLab URL and
// the GitLab's CA (a ConfigMap mounted at /etc/ciel/gitlab-ca).
func editReporterDeployment(t testing.TB, o *unstructured.Unstructured, ns, gitlabURL string) {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("the reporter Deployment has %d containers, want 1", len(containers))
	}
	c := containers[0].(map[string]any)
	var args []any
	for _, a := range c["args"].([]any) {
		s := a.(string)
		switch {
		case strings.HasPrefix(s, "--namespace="):
			s = "--namespace=" + ns
		case strings.HasPrefix(s, "--gitlab-url="):
			s = "--gitlab-url=" + gitlabURL
		}
		args = append(args, s)
	}
	c["args"] = append(args, "--gitlab-ca-file=/etc/ciel/gitlab-ca/ca.crt")
	mounts, _ := c["volumeMounts"].([]any)
	c["volumeMounts"] = append(mounts, map[string]any{"name": "gitlab-ca", "mountPath": "/etc/ciel/gitlab-ca", "readOnly": true})
	_ = unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
	vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
	vols = append(vols, map[string]any{"name": "gitlab-ca", "configMap": map[string]any{"name": "ciel-reporter-gitlab-ca"}})
	_ = unstructured.SetNestedSlice(o.Object, vols, "spec", "template", "spec", "volumes")
}
