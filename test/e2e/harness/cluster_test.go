package harness

import (
	"context"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ciel-ci/ciel/internal/imagefs"
)

// TestClusterSmoke starts the sealed cluster with real kubelets (run it
// through e2e-run: it needs the namespace and the prepared binaries), runs a
// pod on each node, and checks that a pod cannot reach an outside address.
func TestClusterSmoke(t *testing.T) {
	if os.Getenv(EnvNetNS) == "" || os.Getenv(EnvPrepared) == "" {
		t.Skipf("run through cmd/e2e-run (needs %s and %s)", EnvNetNS, EnvPrepared)
	}
	prep, err := ReadPrepared()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// The seal, seen from inside, before any pod tries an outside address.
	out, err := exec.CommandContext(ctx, "ip", "route", "get", SealProbeIP).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Network is unreachable") {
		t.Fatalf("ip route get %s: %q, %v; want Network is unreachable", SealProbeIP, out, err)
	}

	start := time.Now()
	regSup, err := NewSupervisor(filepath.Join(prep.CacheDir, "registry-run"), PidDir(prep.CacheDir), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer regSup.StopAll(5 * time.Second)
	if _, err := StartRegistry(ctx, regSup, filepath.Join(prep.CacheDir, "registry")); err != nil {
		t.Fatal(err)
	}
	pause := RegistryHost + "/ciel/pause:1"
	pushIndex(ctx, t, pause, map[string]v1.Layer{
		"amd64": fileLayer(t, map[string]string{"pause": prep.Binaries["pause-amd64"]}, nil),
		"arm64": fileLayer(t, map[string]string{"pause": prep.Binaries["pause-arm64"]}, nil),
	}, []string{"/pause"})
	links := map[string]string{}
	for _, l := range []string{"sh", "id", "touch", "echo", "uname", "cat", "wget", "sleep", "nslookup", "nc"} {
		links["bin/"+l] = "busybox"
	}
	busybox := RegistryHost + "/ciel/busybox:1"
	pushIndex(ctx, t, busybox, map[string]v1.Layer{
		"amd64": fileLayer(t, map[string]string{"bin/busybox": "/usr/bin/busybox"}, links),
	}, nil)
	t.Logf("registry up and images pushed in %v", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	cfg := ClusterConfigFromPrepared(prep, pause)
	cfg.Logger = logger
	cl, err := StartCluster(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s := time.Now()
		cl.Stop()
		t.Logf("cluster stopped in %v", time.Since(s).Round(time.Millisecond))
	}()
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	for _, p := range cl.Phases {
		t.Logf("  phase %-24s %v", p.Name, p.Duration.Round(time.Millisecond))
	}
	for _, n := range cl.Nodes {
		t.Logf("  node %s Ready %v after its kubelet started", n.Name, n.ReadyAfter.Round(time.Millisecond))
	}

	kube := cl.Kube
	ns := "smoke"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "default ServiceAccount", func() bool {
		_, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	})
	uid, no, yes := int64(65532), false, true
	pods := []*corev1.Pod{
		// Cluster DNS (CoreDNS on NodeIP) and the kubernetes Service
		// (kube-proxy's DNAT to NodeIP:APIServerPort) from the pod network.
		smokePod("amd64", busybox, "echo hello from $(uname -m); nslookup kubernetes.default.svc."+ClusterDomain+
			" && nc -w 5 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT </dev/null && echo apiserver reachable via $KUBERNETES_SERVICE_HOST",
			map[string]string{corev1.LabelHostname: "ciel-amd64"}, nil, nil),
		smokePod("arm64", busybox, "id -u; if touch /rootfs 2>/dev/null; then echo writable; exit 1; fi; echo read-only",
			map[string]string{corev1.LabelArchStable: "arm64"},
			[]corev1.Toleration{{Key: ArchTaintKey, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}},
			&corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, ReadOnlyRootFilesystem: &yes,
				AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}),
		smokePod("sealed", busybox, "if busybox timeout 5 wget -q -O- http://"+SealProbeIP+"/ 2>&1; then echo REACHED; exit 1; fi; echo refused",
			map[string]string{corev1.LabelHostname: "ciel-amd64"}, nil, nil),
	}
	// A pod still running at teardown: Stop must remove it. Its image is
	// the arm64 pause alone (containerd, being amd64, would pick the amd64
	// variant of an index): Running proves an arm64 binary started in a
	// container through binfmt_misc and qemu.
	pauseArm64 := RegistryHost + "/ciel/pause:1-arm64"
	pushImage(ctx, t, pauseArm64, "arm64", fileLayer(t, map[string]string{"pause": prep.Binaries["pause-arm64"]}, nil), []string{"/pause"})
	sleeper := smokePod("sleeper", pauseArm64, "", map[string]string{corev1.LabelArchStable: "arm64"},
		[]corev1.Toleration{{Key: ArchTaintKey, Value: "arm64", Effect: corev1.TaintEffectNoSchedule}}, nil)
	sleeper.Spec.Containers[0].Command = nil
	start = time.Now()
	for _, p := range append([]*corev1.Pod{sleeper}, pods...) {
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]string{
		"amd64":  {"hello from x86_64", "Address: " + KubernetesServiceIP, "apiserver reachable via " + KubernetesServiceIP},
		"arm64":  {"65532", "read-only"},
		"sealed": {"Network is unreachable", "refused"},
	}
	wantNode := map[string]string{"amd64": "ciel-amd64", "arm64": "ciel-arm64", "sealed": "ciel-amd64"}
	for _, p := range pods {
		var got *corev1.Pod
		waitFor(ctx, t, "pod "+p.Name+" done", func() bool {
			got, err = kube.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			return err == nil && (got.Status.Phase == corev1.PodSucceeded || got.Status.Phase == corev1.PodFailed)
		})
		logs, err := kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Errorf("logs of %s: %v", p.Name, err)
		}
		t.Logf("pod %s on %s: %s after %v; logs: %q", p.Name, got.Spec.NodeName, got.Status.Phase, time.Since(start).Round(time.Millisecond), logs)
		if got.Status.Phase != corev1.PodSucceeded || got.Spec.NodeName != wantNode[p.Name] {
			t.Errorf("pod %s: %s on %q; want Succeeded on %s", p.Name, got.Status.Phase, got.Spec.NodeName, wantNode[p.Name])
		}
		for _, w := range want[p.Name] {
			if !strings.Contains(string(logs), w) {
				t.Errorf("pod %s logs %q lack %q", p.Name, logs, w)
			}
		}
	}
	waitFor(ctx, t, "pod sleeper Running", func() bool {
		got, err := kube.CoreV1().Pods(ns).Get(ctx, sleeper.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning
	})
	t.Log("pod sleeper (arm64 pause) Running on ciel-arm64; left for the teardown")
}

func smokePod(name, image, script string, selector map[string]string, tol []corev1.Toleration, sc *corev1.SecurityContext) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			NodeSelector:                  selector,
			Tolerations:                   tol,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				Command: []string{"/bin/sh", "-c", script}, SecurityContext: sc,
			}},
		},
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, f func() bool) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for !f() {
		select {
		case <-wctx.Done():
			t.Fatalf("waiting for %s: %v", what, wctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// fileLayer makes a layer of files (path in image -> host file) and
// symlinks (path -> target), plus /tmp and /bin.
func fileLayer(t *testing.T, files, links map[string]string) v1.Layer {
	t.Helper()
	fl := []imagefs.File{{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777}, {Path: "bin", Mode: fs.ModeDir | 0o755}}
	for dst, src := range files {
		fl = append(fl, imagefs.File{Path: dst, Mode: 0o755, Source: src})
	}
	for l, target := range links {
		fl = append(fl, imagefs.File{Path: l, Mode: fs.ModeSymlink, Link: target})
	}
	layer, err := imagefs.Layer(fl)
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// pushImage pushes a single-layer image for one architecture.
func pushImage(ctx context.Context, t *testing.T, ref, arch string, layer v1.Layer, entrypoint []string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, archImage(t, arch, layer, entrypoint), remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func archImage(t *testing.T, arch string, layer v1.Layer, entrypoint []string) v1.Image {
	t.Helper()
	img, err := imagefs.Image(v1.Platform{OS: "linux", Architecture: arch}, v1.Config{Entrypoint: entrypoint, Env: []string{"PATH=/bin"}}, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex pushes an image index with one single-layer image per
// architecture.
func pushIndex(ctx context.Context, t *testing.T, ref string, layers map[string]v1.Layer, entrypoint []string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	var plats []v1.Platform
	for _, arch := range slices.Sorted(maps.Keys(layers)) {
		plats = append(plats, v1.Platform{OS: "linux", Architecture: arch})
	}
	idx, err := imagefs.Index(plats, func(p v1.Platform) (v1.Image, error) {
		return archImage(t, p.Architecture, layers[p.Architecture], entrypoint), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}
