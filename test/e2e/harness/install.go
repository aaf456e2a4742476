package harness

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// ReleaseNamespace is the build namespace dist/release.yaml installs the
// Triggers side into (config/overlays/example), and InterceptorNamespace
// the interceptor's.
const (
	ReleaseNamespace     = "ci"
	InterceptorNamespace = "ciel"
)

var clusterInterceptorGVR = schema.GroupVersionResource{Group: "triggers.tekton.dev", Version: "v1alpha1", Resource: "clusterinterceptors"}

// Installer applies release files to a cluster as a user does with
// `kubectl apply -f`, then waits for what they run to be ready.
type Installer struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Disc    discovery.DiscoveryInterface
	// Logf reports progress (default: nothing).
	Logf func(format string, args ...any)
}

func (in *Installer) logf(format string, args ...any) {
	if in.Logf != nil {
		in.Logf(format, args...)
	}
}

// ApplyFile applies a release file: its CRDs first (waiting until they
// are established, as the file's custom resources need them), then every
// other object in the file's order. It returns the objects applied.
func (in *Installer) ApplyFile(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	objs, err := DecodeYAML(f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return objs, in.Apply(ctx, objs)
}

// Apply applies objs, CRDs first.
func (in *Installer) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	var crds, rest []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, o)
		} else {
			rest = append(rest, o)
		}
	}
	if len(crds) > 0 {
		if _, err := ApplyObjects(ctx, in.Dynamic, in.Disc, "", crds); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := waitCRDsEstablished(wctx, in.Dynamic, crds); err != nil {
			return err
		}
	}
	// A webhook the file itself installs may not serve yet (its pod is
	// starting): the API server then refuses objects it must validate.
	// Retry those for a while, as `kubectl apply` run again would.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		_, err := ApplyObjects(ctx, in.Dynamic, in.Disc, "", rest)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !retriableApply(err) {
			return err
		}
		in.logf("apply: %v; retrying", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// retriableApply says whether an apply failed because a webhook (or a
// freshly established CRD) is not serving yet.
func retriableApply(err error) bool {
	s := err.Error()
	for _, m := range []string{"failed calling webhook", "no endpoints available", "connection refused", "no matches for kind",
		"the server could not find the requested resource", "context deadline exceeded", "i/o timeout"} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err)
}

// WaitDeployments waits until every Deployment of objs (or, with none
// listed, of the namespaces named) is Available with all replicas updated.
func (in *Installer) WaitDeployments(ctx context.Context, timeout time.Duration, objs []*unstructured.Unstructured) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, o := range objs {
		if o.GetKind() != "Deployment" {
			continue
		}
		ns, name := o.GetNamespace(), o.GetName()
		start := time.Now()
		var last *appsv1.Deployment
		err := waitUntil(ctx, 500*time.Millisecond, "Deployment "+ns+"/"+name+" available", func(ctx context.Context) (bool, error) {
			d, err := in.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			last = d
			return deploymentReady(d), nil
		})
		if err != nil {
			return fmt.Errorf("%w%s", err, in.podProblems(context.Background(), ns, last))
		}
		in.logf("deployment %s/%s available after %s", ns, name, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

func deploymentReady(d *appsv1.Deployment) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want {
		return false
	}
	return d.Status.Replicas == d.Status.UpdatedReplicas
}

// podProblems describes why a Deployment's pods are not ready: their
// waiting or terminated states.
func (in *Installer) podProblems(ctx context.Context, ns string, d *appsv1.Deployment) string {
	if d == nil || d.Spec.Selector == nil {
		return ""
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return ""
	}
	pods, err := in.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "\n  pod %s: %s on %q", p.Name, p.Status.Phase, p.Spec.NodeName)
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				fmt.Fprintf(&b, "; %s: %s", c.Type, c.Message)
			}
		}
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			switch {
			case cs.State.Waiting != nil:
				fmt.Fprintf(&b, "; %s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Terminated != nil:
				fmt.Fprintf(&b, "; %s terminated: %s exit %d %s", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, cs.State.Terminated.Message)
			}
			if cs.RestartCount > 0 {
				fmt.Fprintf(&b, " (%d restarts)", cs.RestartCount)
			}
		}
	}
	return b.String()
}

// WaitCABundles waits until every ClusterInterceptor (or those named) has a
// caBundle: an EventListener created before its interceptors publish one
// crash-loops until they do.
func (in *Installer) WaitCABundles(ctx context.Context, timeout time.Duration, names ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := waitUntil(ctx, 500*time.Millisecond, "ClusterInterceptor caBundles", func(ctx context.Context) (bool, error) {
		l, err := in.Dynamic.Resource(clusterInterceptorGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		seen := 0
		for _, ci := range l.Items {
			if len(names) > 0 && !slices.Contains(names, ci.GetName()) {
				continue
			}
			seen++
			if b, _, _ := unstructured.NestedString(ci.Object, "spec", "clientConfig", "caBundle"); b == "" {
				return false, fmt.Errorf("ClusterInterceptor %s has no caBundle yet", ci.GetName())
			}
		}
		if len(names) > 0 && seen < len(names) {
			return false, fmt.Errorf("%d of the ClusterInterceptors %v exist", seen, names)
		}
		return seen > 0, nil
	})
	if err == nil {
		in.logf("ClusterInterceptor caBundles set after %s", time.Since(start).Round(100*time.Millisecond))
	}
	return err
}

// ForNamespace returns the objects of a release file that belong to its
// build namespace (ReleaseNamespace), moved to ns as the overlay's one edit
// (docs/install.md, "Choose the namespace") moves them: every namespaced
// object's namespace and every subject's namespace. Cluster-scoped
// bindings whose subjects are in the build namespace are renamed after ns,
// so that two build namespaces do not overwrite each other's binding.
// Objects outside the build namespace (the interceptor, the CRD-level
// objects) are not returned: they are installed once.
func ForNamespace(objs []*unstructured.Unstructured, ns string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch {
		case o.GetKind() == "Namespace":
			continue
		case o.GetNamespace() == ReleaseNamespace:
			c := o.DeepCopy()
			c.SetNamespace(ns)
			moveSubjects(c, ns)
			out = append(out, c)
		case o.GetKind() == "ClusterRoleBinding" && hasSubjectIn(o, ReleaseNamespace):
			c := o.DeepCopy()
			c.SetName(o.GetName() + "-" + ns)
			moveSubjects(c, ns)
			out = append(out, c)
		}
	}
	return out
}

func hasSubjectIn(o *unstructured.Unstructured, ns string) bool {
	subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok && m["namespace"] == ns {
			return true
		}
	}
	return false
}

func moveSubjects(o *unstructured.Unstructured, ns string) {
	subjects, found, _ := unstructured.NestedSlice(o.Object, "subjects")
	if !found {
		return
	}
	for _, s := range subjects {
		if m, ok := s.(map[string]any); ok && m["namespace"] == ReleaseNamespace {
			m["namespace"] = ns
		}
	}
	_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
}
