package kubeconfigs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"

	"github.com/ciel-ci/ciel/internal/waitfor"
)

func kubeconfig(host string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://%s:6443
users:
- name: u
  user:
    token: secret-token-%s
contexts:
- name: ctx
  context:
    cluster: c
    user: u
current-context: ctx
`, host, host)
}

// recorder is a RunFunc that logs starts and stops in order.
type recorder struct {
	mu     sync.Mutex
	events []string
	fail   map[string]int // cluster → runs left to fail
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) run(ctx context.Context, c Cluster, ready func()) error {
	host := strings.TrimSuffix(strings.TrimPrefix(c.Config.Host, "https://"), ":6443")
	r.add("start " + c.Name + " " + host)
	r.mu.Lock()
	failing := r.fail[c.Name] > 0
	if failing {
		r.fail[c.Name]--
	}
	r.mu.Unlock()
	if failing {
		r.add("fail " + c.Name + " " + host)
		return errors.New("cannot reach the API server")
	}
	ready()
	<-ctx.Done()
	r.add("stop " + c.Name + " " + host)
	return nil
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitfor.True(t, 10*time.Second, what, cond)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as editors and kubectl cp do, so a scan never
	// sees half a file.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type harness struct {
	w    *Watcher
	rec  *recorder
	reg  *prometheus.Registry
	stop func()
}

func start(t *testing.T, dir string, opts ...Option) *harness {
	t.Helper()
	h := &harness{rec: &recorder{fail: map[string]int{}}, reg: prometheus.NewRegistry()}
	w, err := New(dir, h.rec.run, append([]Option{WithRegisterer(h.reg), WithDebounce(10 * time.Millisecond),
		WithRescanInterval(time.Hour), WithStopTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	h.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			h.stop()
		}
	})
	return h
}

func (h *harness) has(events ...string) func() bool {
	return func() bool {
		got := h.rec.Events()
		for _, e := range events {
			if !slices.Contains(got, e) {
				return false
			}
		}
		return true
	}
}

func (h *harness) states() map[string]State {
	out := map[string]State{}
	for _, s := range h.w.Clusters() {
		out[s.Name] = s.State
	}
	return out
}

func TestDirectoryChangesAtRuntime(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "alpha.yaml"), kubeconfig("a1"))
	write(t, filepath.Join(dir, "beta.kubeconfig"), kubeconfig("b1"))
	os.Mkdir(filepath.Join(dir, "subdir"), 0o755)
	os.WriteFile(filepath.Join(dir, ".alpha.yaml.swp"), []byte("garbage"), 0o600)

	h := start(t, dir)
	eventually(t, "both clusters ready", func() bool { return h.w.Ready() == nil })
	if diff := cmp.Diff(map[string]State{"alpha": Ready, "beta": Ready}, h.states()); diff != "" {
		t.Fatalf("states (-want +got):\n%s", diff)
	}

	// Add.
	write(t, filepath.Join(dir, "gamma.yml"), kubeconfig("g1"))
	eventually(t, "gamma started", h.has("start gamma g1"))

	// Change: the old worker is stopped before the new one starts.
	write(t, filepath.Join(dir, "alpha.yaml"), kubeconfig("a2"))
	eventually(t, "alpha restarted", h.has("start alpha a2"))
	ev := h.rec.Events()
	if stop, start := slices.Index(ev, "stop alpha a1"), slices.Index(ev, "start alpha a2"); stop < 0 || stop > start {
		t.Fatalf("alpha restarted before its old worker stopped: %q", ev)
	}

	// Remove.
	os.Remove(filepath.Join(dir, "beta.kubeconfig"))
	eventually(t, "beta stopped", h.has("stop beta b1"))
	eventually(t, "beta forgotten", func() bool { _, ok := h.states()["beta"]; return !ok })

	// A bad file: logged, counted, the others keep working.
	write(t, filepath.Join(dir, "broken.yaml"), "clusters: [this is not: a kubeconfig")
	eventually(t, "broken reported", func() bool { return h.states()["broken"] == Invalid })
	if got := testutil.ToFloat64(h.w.errorsTotal.WithLabelValues("broken")); got != 1 {
		t.Errorf("kubeconfig errors for broken = %v, want 1", got)
	}
	if err := h.w.Ready(); err != nil {
		t.Errorf("an invalid file made the watcher unready: %v", err)
	}
	write(t, filepath.Join(dir, "delta.yaml"), kubeconfig("d1"))
	eventually(t, "delta started next to the broken file", h.has("start delta d1"))

	// A good cluster whose file turns bad keeps its last good config...
	write(t, filepath.Join(dir, "alpha.yaml"), "apiVersion: v1\nkind: Config\n")
	eventually(t, "alpha reported invalid", func() bool { return h.states()["alpha"] == Invalid })
	if slices.Contains(h.rec.Events(), "stop alpha a2") {
		t.Fatal("alpha was stopped by an invalid kubeconfig")
	}
	// ...until it is fixed.
	write(t, filepath.Join(dir, "alpha.yaml"), kubeconfig("a3"))
	eventually(t, "alpha fixed", h.has("stop alpha a2", "start alpha a3"))
	eventually(t, "alpha ready", func() bool { return h.states()["alpha"] == Ready })

	// The broken file fixed.
	write(t, filepath.Join(dir, "broken.yaml"), kubeconfig("x1"))
	eventually(t, "broken started once fixed", h.has("start broken x1"))

	// Rewriting the same content is not a change.
	write(t, filepath.Join(dir, "gamma.yml"), kubeconfig("g1"))
	h.w.scan(context.Background())

	h.stop()
	want := []string{"stop alpha a3", "stop gamma g1", "stop delta d1", "stop broken x1"}
	if !h.has(want...)() {
		t.Errorf("after Run returned, events = %q; want all of %q", h.rec.Events(), want)
	}
	count := map[string]int{}
	for _, e := range h.rec.Events() {
		count[e]++
	}
	if count["start gamma g1"] != 1 {
		t.Errorf("gamma started %d times, want 1", count["start gamma g1"])
	}
	if got := testutil.ToFloat64(h.w.startsTotal.WithLabelValues("alpha")); got != 3 {
		t.Errorf("alpha starts = %v, want 3", got)
	}
}

func TestRescanWithoutNotifications(t *testing.T) {
	dir := t.TempDir()
	h := start(t, dir, WithNotify(false), WithRescanInterval(20*time.Millisecond))
	eventually(t, "ready with an empty directory", func() bool { return h.w.Ready() == nil })
	write(t, filepath.Join(dir, "alpha.yaml"), kubeconfig("a1"))
	eventually(t, "alpha started by a rescan", h.has("start alpha a1"))
	os.Remove(filepath.Join(dir, "alpha.yaml"))
	eventually(t, "alpha stopped by a rescan", h.has("stop alpha a1"))
}

// TestSecretVolume follows the layout kubelet gives a Secret volume: files
// are symlinks through "..data", a symlink swapped atomically on update.
func TestSecretVolume(t *testing.T) {
	dir := t.TempDir()
	version := func(ts string, files map[string]string) {
		t.Helper()
		d := filepath.Join(dir, ".."+ts)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err != nil {
				if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
					t.Fatal(err)
				}
			}
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(".."+ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("2026_01_01_00_00_00.1", map[string]string{"prod": kubeconfig("p1")})
	h := start(t, dir)
	eventually(t, "prod started", h.has("start prod p1"))

	version("2026_01_01_00_01_00.2", map[string]string{"prod": kubeconfig("p2"), "staging": kubeconfig("s1")})
	os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1"))
	eventually(t, "prod restarted and staging started", h.has("stop prod p1", "start prod p2", "start staging s1"))
	if diff := cmp.Diff(map[string]State{"prod": Ready, "staging": Ready}, h.states()); diff != "" {
		t.Errorf("states (-want +got):\n%s", diff)
	}
}

func TestFailingWorkerIsRetried(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "flaky.yaml"), kubeconfig("f1"))
	write(t, filepath.Join(dir, "steady.yaml"), kubeconfig("s1"))
	rec := &recorder{fail: map[string]int{"flaky": 2}}
	reg := prometheus.NewRegistry()
	w, err := New(dir, rec.run, WithRegisterer(reg), WithRetryBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "flaky ready after two failures", func() bool {
		for _, s := range w.Clusters() {
			if s.Name == "flaky" && s.State == Ready {
				return true
			}
		}
		return false
	})
	if got := testutil.ToFloat64(w.failuresTotal.WithLabelValues("flaky")); got != 2 {
		t.Errorf("failures = %v, want 2", got)
	}
	if got := testutil.ToFloat64(w.failuresTotal.WithLabelValues("steady")); got != 0 {
		t.Errorf("steady failures = %v, want 0", got)
	}
	want := `
# HELP ciel_reporter_clusters Clusters per state (starting, ready, failed, invalid).
# TYPE ciel_reporter_clusters gauge
ciel_reporter_clusters{state="failed"} 0
ciel_reporter_clusters{state="invalid"} 0
ciel_reporter_clusters{state="ready"} 2
ciel_reporter_clusters{state="starting"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "ciel_reporter_clusters"); err != nil {
		t.Error(err)
	}
}

func TestStaticCluster(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "local.yaml"), kubeconfig("clash"))
	write(t, filepath.Join(dir, "remote.yaml"), kubeconfig("r1"))
	h := start(t, dir, WithStaticCluster("local", &rest.Config{Host: "https://in-cluster:6443"}))
	eventually(t, "static and file clusters started", h.has("start local in-cluster", "start remote r1"))
	eventually(t, "ready", func() bool { return h.w.Ready() == nil })
	if got := testutil.ToFloat64(h.w.errorsTotal.WithLabelValues("local")); got != 1 {
		t.Errorf("a file named like the static cluster: errors = %v, want 1", got)
	}
	if slices.Contains(h.rec.Events(), "start local clash") {
		t.Error("a file replaced the static cluster")
	}

	// Static clusters alone, without a directory.
	h2 := start(t, "", WithStaticCluster("local", &rest.Config{Host: "https://in-cluster:6443"}))
	eventually(t, "static-only ready", func() bool { return h2.w.Ready() == nil })
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"prod.yaml": "prod", "prod.yml": "prod", "prod.kubeconfig": "prod", "prod.json": "prod",
		"prod": "prod", "prod.eu.conf": "prod.eu", ".yaml": ".yaml", "eu-west-1.config": "eu-west-1",
	} {
		if got := clusterName(in); got != want {
			t.Errorf("clusterName(%q) = %q, want %q", in, got, want)
		}
	}

	dir := t.TempDir()
	write(t, filepath.Join(dir, "dup.yaml"), kubeconfig("d1"))
	write(t, filepath.Join(dir, "dup.yml"), kubeconfig("d2"))
	write(t, filepath.Join(dir, "bad name!.yaml"), kubeconfig("n1"))
	write(t, filepath.Join(dir, "huge.yaml"), strings.Repeat("#", maxFileSize+1))
	h := start(t, dir)
	eventually(t, "scan done", func() bool { return h.w.Ready() == nil })
	want := map[string]State{"dup": Ready, "dup.yml": Invalid, "bad name!.yaml": Invalid, "huge": Invalid}
	eventually(t, "states", func() bool { return cmp.Diff(want, h.states()) == "" })
	if slices.Contains(h.rec.Events(), "start dup d2") || slices.Contains(h.rec.Events(), "start bad name! n1") {
		t.Errorf("invalid files started: %q", h.rec.Events())
	}
}

func TestNewAndRunErrors(t *testing.T) {
	rec := &recorder{}
	if _, err := New("", rec.run); err == nil {
		t.Error("no directory and no static cluster accepted")
	}
	if _, err := New(t.TempDir(), nil); err == nil {
		t.Error("nil run function accepted")
	}
	for _, opt := range []Option{WithRescanInterval(0), WithStopTimeout(-1), WithRetryBackoff(2, 1), WithLogger(nil),
		WithStaticCluster("bad name", &rest.Config{}), WithStaticCluster("x", nil), WithRegisterer(nil), WithDebounce(-1)} {
		if _, err := New(t.TempDir(), rec.run, opt); err == nil {
			t.Error("invalid option accepted")
		}
	}
	if _, err := New("", rec.run, WithStaticCluster("a", &rest.Config{}), WithStaticCluster("a", &rest.Config{})); err == nil {
		t.Error("duplicate static cluster accepted")
	}
	w, err := New(filepath.Join(t.TempDir(), "missing"), rec.run)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("Run over a missing directory succeeded")
	}
	if err := w.Ready(); err == nil {
		t.Error("Ready before any scan")
	}
}
