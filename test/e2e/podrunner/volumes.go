package podrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Mount makes a host path appear at a path inside a container.
type Mount struct {
	ContainerPath string
	HostPath      string
	ReadOnly      bool
}

// Mounts is a container's filesystem view: the mounts in the order a
// kubelet would make them (parents before children).
type Mounts []Mount

// HostPath returns the host path behind containerPath, resolved through the
// deepest mount that contains it.
func (ms Mounts) HostPath(containerPath string) (string, error) {
	if !path.IsAbs(containerPath) {
		return "", fmt.Errorf("resolving %q: not an absolute path", containerPath)
	}
	p := path.Clean(containerPath)
	best := -1
	for i, m := range ms {
		if within(p, m.ContainerPath) && (best < 0 || len(m.ContainerPath) >= len(ms[best].ContainerPath)) {
			best = i
		}
	}
	if best < 0 {
		return "", fmt.Errorf("resolving %q: no volume is mounted there (only the image's own files, which the pod runner does not have)", containerPath)
	}
	rel := strings.TrimPrefix(p, ms[best].ContainerPath)
	return filepath.Join(ms[best].HostPath, filepath.FromSlash(rel)), nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || dir == "/" || strings.HasPrefix(p, dir+"/")
}

// sortMounts orders mounts so that a parent directory is mounted before the
// paths below it, keeping the pod's order otherwise.
func sortMounts(ms Mounts) {
	sort.SliceStable(ms, func(i, j int) bool {
		return strings.Count(path.Clean(ms[i].ContainerPath), "/") < strings.Count(path.Clean(ms[j].ContainerPath), "/")
	})
}

// podVolumes maps each of a pod's volumes to a host directory.
type podVolumes struct {
	dirs map[string]string // volume name -> host dir
	// downward lists the downwardAPI volumes (refreshed when the pod's
	// labels or annotations change, like a kubelet does).
	downward map[string]*corev1.DownwardAPIVolumeSource
}

// prepareVolumes creates a host directory for every volume of pod under
// podDir/volumes (persistent volume claims under workDir/pvcs, shared by the
// pods that use the same claim) and fills ConfigMap, Secret, projected and
// downward API volumes. Volume types a kubelet would need a real node for
// (hostPath, CSI, ...) are errors.
func prepareVolumes(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod, podDir, workDir string) (*podVolumes, error) {
	pv := &podVolumes{dirs: map[string]string{}, downward: map[string]*corev1.DownwardAPIVolumeSource{}}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(podDir, "volumes", v.Name)
		var files map[string][]byte
		var err error
		switch {
		case v.EmptyDir != nil:
		case v.PersistentVolumeClaim != nil:
			claim := v.PersistentVolumeClaim.ClaimName
			if _, err := kube.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, claim, metav1.GetOptions{}); err != nil {
				return nil, fmt.Errorf("volume %s: persistent volume claim %s: %w", v.Name, claim, err)
			}
			dir = filepath.Join(workDir, "pvcs", pod.Namespace, claim)
		case v.ConfigMap != nil:
			files, err = configMapFiles(ctx, kube, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
		case v.Secret != nil:
			files, err = secretFiles(ctx, kube, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional)
		case v.DownwardAPI != nil:
			pv.downward[v.Name] = v.DownwardAPI
			files, err = downwardFiles(pod, v.DownwardAPI.Items)
		case v.Projected != nil:
			files, err = projectedFiles(ctx, kube, pod, v.Projected)
		default:
			return nil, fmt.Errorf("volume %s: unsupported volume type (the pod runner supports emptyDir, persistentVolumeClaim, configMap, secret, downwardAPI and projected volumes)", v.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := writeFiles(dir, files); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		pv.dirs[v.Name] = dir
	}
	return pv, nil
}

// refreshDownward rewrites the downward API volumes from pod's current
// metadata.
func (pv *podVolumes) refreshDownward(pod *corev1.Pod) error {
	for name, src := range pv.downward {
		files, err := downwardFiles(pod, src.Items)
		if err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		if err := writeFiles(pv.dirs[name], files); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
	}
	return nil
}

// containerMounts returns c's filesystem view: its volume mounts (with
// subPath) and its termination message file.
func (pv *podVolumes) containerMounts(c *corev1.Container, terminationFile string) (Mounts, error) {
	var ms Mounts
	for _, vm := range c.VolumeMounts {
		dir, ok := pv.dirs[vm.Name]
		if !ok {
			return nil, fmt.Errorf("container %s mounts unknown volume %s", c.Name, vm.Name)
		}
		if vm.SubPathExpr != "" {
			return nil, fmt.Errorf("container %s: subPathExpr is not supported", c.Name)
		}
		host := dir
		if vm.SubPath != "" {
			if path.IsAbs(vm.SubPath) || contains(strings.Split(vm.SubPath, "/"), "..") {
				return nil, fmt.Errorf("container %s: invalid subPath %q", c.Name, vm.SubPath)
			}
			host = filepath.Join(dir, filepath.FromSlash(vm.SubPath))
			if _, err := os.Stat(host); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(host, 0o777); err != nil {
					return nil, err
				}
			}
		}
		if !path.IsAbs(vm.MountPath) {
			return nil, fmt.Errorf("container %s: mount path %q is not absolute", c.Name, vm.MountPath)
		}
		ms = append(ms, Mount{ContainerPath: path.Clean(vm.MountPath), HostPath: host, ReadOnly: vm.ReadOnly})
	}
	tp := c.TerminationMessagePath
	if tp == "" {
		tp = corev1.TerminationMessagePathDefault
	}
	ms = append(ms, Mount{ContainerPath: path.Clean(tp), HostPath: terminationFile})
	sortMounts(ms)
	return ms, nil
}

func writeFiles(dir string, files map[string][]byte) error {
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			return err
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, what string) (map[string][]byte, error) {
	files := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

func configMapFiles(ctx context.Context, kube kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config map %s: %w", name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, "config map "+name)
}

func secretFiles(ctx context.Context, kube kubernetes.Interface, ns, name string, items []corev1.KeyToPath, optional *bool) (map[string][]byte, error) {
	s, err := kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", name, err)
	}
	return keyFiles(s.Data, items, "secret "+name)
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, it := range items {
		if it.ResourceFieldRef != nil || it.FieldRef == nil {
			return nil, fmt.Errorf("downward API item %s: only fieldRef is supported", it.Path)
		}
		v, err := fieldValue(pod, it.FieldRef.FieldPath)
		if err != nil {
			return nil, err
		}
		files[it.Path] = []byte(v)
	}
	return files, nil
}

func projectedFiles(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod, p *corev1.ProjectedVolumeSource) (map[string][]byte, error) {
	files := map[string][]byte{}
	add := func(f map[string][]byte) {
		for k, v := range f {
			files[k] = v
		}
	}
	for _, src := range p.Sources {
		switch {
		case src.ConfigMap != nil:
			f, err := configMapFiles(ctx, kube, pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional)
			if err != nil {
				return nil, err
			}
			add(f)
		case src.Secret != nil:
			f, err := secretFiles(ctx, kube, pod.Namespace, src.Secret.Name, src.Secret.Items, src.Secret.Optional)
			if err != nil {
				return nil, err
			}
			add(f)
		case src.DownwardAPI != nil:
			f, err := downwardFiles(pod, src.DownwardAPI.Items)
			if err != nil {
				return nil, err
			}
			add(f)
		case src.ServiceAccountToken != nil:
			tok, err := serviceAccountToken(ctx, kube, pod, src.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			files[src.ServiceAccountToken.Path] = []byte(tok)
		default:
			return nil, errors.New("unsupported projected volume source")
		}
	}
	return files, nil
}

// serviceAccountToken asks the apiserver for a token bound to the pod, as a
// kubelet does for projected service-account token volumes.
func serviceAccountToken(ctx context.Context, kube kubernetes.Interface, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: src.ExpirationSeconds,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	tr, err := kube.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for service account %s: %w", sa, err)
	}
	return tr.Status.Token, nil
}

var fieldSubscript = regexp.MustCompile(`^metadata\.(labels|annotations)\['([^']+)'\]$`)

// fieldValue resolves a downward API field path against pod.
func fieldValue(pod *corev1.Pod, fieldPath string) (string, error) {
	if m := fieldSubscript.FindStringSubmatch(fieldPath); m != nil {
		if m[1] == "labels" {
			return pod.Labels[m[2]], nil
		}
		return pod.Annotations[m[2]], nil
	}
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.podIP":
		return "127.0.0.1", nil
	}
	return "", fmt.Errorf("unsupported field path %q", fieldPath)
}

// formatMap renders labels or annotations the way the downward API does:
// sorted key="value" lines.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
	}
	return b.String()
}
