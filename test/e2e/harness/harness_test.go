package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/modfile"
)

func TestPKIChainsAndNames(t *testing.T) {
	p, err := NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := p.CAPEM()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("the CA file holds no certificate")
	}
	tests := []struct {
		name      string
		cert, key string
		usage     x509.ExtKeyUsage
		host      string
		wantOrg   []string
	}{
		{"apiserver on loopback", p.APIServerCert, p.APIServerKey, x509.ExtKeyUsageServerAuth, "127.0.0.1", nil},
		{"apiserver in-cluster name", p.APIServerCert, p.APIServerKey, x509.ExtKeyUsageServerAuth, "kubernetes.default.svc", nil},
		{"interceptor on loopback", p.InterceptorCert, p.InterceptorKey, x509.ExtKeyUsageServerAuth, "127.0.0.1", nil},
		{"interceptor on localhost", p.InterceptorCert, p.InterceptorKey, x509.ExtKeyUsageServerAuth, "localhost", nil},
		{"admin client", p.AdminCert, p.AdminKey, x509.ExtKeyUsageClientAuth, "", []string{"system:masters"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tc.cert, tc.key)
			if err != nil {
				t.Fatalf("certificate and key do not match: %v", err)
			}
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			if diff := cmp.Diff(tc.wantOrg, leaf.Subject.Organization); tc.wantOrg != nil && diff != "" {
				t.Errorf("organization (-want +got):\n%s", diff)
			}
		})
	}
	b, err := os.ReadFile(p.ServiceAccountPubKey)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		t.Fatalf("service-account public key is not a PEM PUBLIC KEY: %q", b)
	}
	if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
		t.Errorf("parsing the service-account public key: %v", err)
	}
}

// TestGitLabCertificateChains: the suite's GitLab certificate, for an
// address or a name, verifies against the CA it returns, for serving.
func TestGitLabCertificateChains(t *testing.T) {
	for _, host := range []string{"10.255.255.1", "gitlab.e2e.invalid"} {
		t.Run(host, func(t *testing.T) {
			caPEM, cert, err := selfSignedServer(host)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(caPEM) {
				t.Fatal("the CA PEM holds no certificate")
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
}

func TestFreePortListDistinctAndBindable(t *testing.T) {
	ports, err := freePortList(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d returned twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", itoa(p)))
		if err != nil {
			t.Errorf("port %d is not free after freePortList returned: %v", p, err)
			continue
		}
		l.Close()
	}
}

func itoa(i int) string { return fmtInt(i) }

func fmtInt(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestNodeBinariesMatchRootVersions checks that the cluster runs the
// versions the product compiles against: the Kubernetes commands of one
// release, and Tekton Pipelines and Triggers (installed from their release
// configuration at build/tekton's versions) at the root module's.
func TestNodeBinariesMatchRootVersions(t *testing.T) {
	root, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	rootMod, err := readModFile(filepath.Join(root, "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, r := range rootMod.Require {
		want[r.Mod.Path] = r.Mod.Version
	}
	bins, err := NodeBinaries(root)
	if err != nil {
		t.Fatal(err)
	}
	kv := bins["kube-apiserver"].Version
	for name, b := range bins {
		switch {
		case strings.HasPrefix(b.Package, "k8s.io/kubernetes/"):
			if b.Version != kv {
				t.Errorf("%s is Kubernetes %s, the apiserver %s", name, b.Version, kv)
			}
		case strings.HasPrefix(name, "kaniko-executor-"):
			// Not a dependency of the product: the version its Task is
			// tested with (upstream's last release served by the proxy).
			if b.Version != "v1.24.0" {
				t.Errorf("%s is %s, want v1.24.0", name, b.Version)
			}
		}
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubelet-arm64", "kube-proxy", "coredns", "pause-amd64", "pause-arm64", "kaniko-executor-amd64", "kaniko-executor-arm64"} {
		if _, ok := bins[c]; !ok {
			t.Errorf("NodeBinaries lacks %s", c)
		}
	}
	tektonMod, err := readModFile(filepath.Join(root, "build", "tekton"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"github.com/tektoncd/pipeline", "github.com/tektoncd/triggers"} {
		if got := requireOf(tektonMod, m); got != want[m] {
			t.Errorf("the suite installs %s %s, the root module requires %s", m, got, want[m])
		}
	}
	kube, err := readModFile(filepath.Join(root, "build", "kube"))
	if err != nil {
		t.Fatal(err)
	}
	if got := requireOf(kube, "k8s.io/kubernetes"); got != kv {
		t.Errorf("build/kube requires k8s.io/kubernetes %s, the binaries say %s", got, kv)
	}
	major, minor, ok := kubeMajorMinor(kv)
	if !ok || major != "1" {
		t.Fatalf("build/kube requires k8s.io/kubernetes %q", kv)
	}
	staging := "v0." + strings.TrimPrefix(kv, "v1.")
	for _, r := range kube.Replace {
		if !strings.HasPrefix(r.Old.Path, "k8s.io/") {
			continue
		}
		if r.New.Path != r.Old.Path || r.New.Version != staging {
			t.Errorf("build/kube replaces %s with %s %s, want %s %s (the staging module of k8s.io/kubernetes %s, minor %s)", r.Old.Path, r.New.Path, r.New.Version, r.Old.Path, staging, kv, minor)
		}
	}
}

func requireOf(f *modfile.File, path string) string {
	for _, r := range f.Require {
		if r.Mod.Path == path {
			return r.Mod.Version
		}
	}
	return ""
}

func TestKubeMajorMinor(t *testing.T) {
	tests := []struct {
		in, major, minor string
		ok               bool
	}{
		{"v1.35.0", "1", "35", true},
		{"v1.34.1", "1", "34", true},
		{"v1", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		major, minor, ok := kubeMajorMinor(tc.in)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("kubeMajorMinor(%q) = %q, %q, %v; want %q, %q, %v", tc.in, major, minor, ok, tc.major, tc.minor, tc.ok)
		}
	}
}

// TestBuilderCachesByContent builds a tiny module twice: the second call
// reuses the binary; changing the linker flags builds a new one.
func TestBuilderCachesByContent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go toolchain")
	}
	mod := t.TempDir()
	write(t, filepath.Join(mod, "go.mod"), "module example.com/hello\n\ngo 1.22\n")
	write(t, filepath.Join(mod, "go.sum"), "")
	write(t, filepath.Join(mod, "main.go"), "package main\n\nvar msg = \"unset\"\n\nfunc main() { println(msg) }\n")
	b := &Builder{Dir: t.TempDir()}
	bin := Binary{Name: "hello", ModuleDir: mod, Package: "example.com/hello", Version: "v0.0.1", LDFlags: []string{"-X", "main.msg=one"}}
	ctx := context.Background()
	p1, rec1, err := b.Ensure(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if rec1.Reused {
		t.Error("first Ensure reports reuse")
	}
	if !strings.HasPrefix(filepath.Base(p1), "hello-v0.0.1-") {
		t.Errorf("cached name %q, want hello-v0.0.1-KEY", filepath.Base(p1))
	}
	out, err := exec.Command(p1).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "one" {
		t.Fatalf("running the built binary: %q, %v", out, err)
	}
	p2, rec2, err := b.Ensure(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if p2 != p1 || !rec2.Reused {
		t.Errorf("second Ensure: path %s reused %v; want %s reused", p2, rec2.Reused, p1)
	}
	if rec2.Duration != rec1.Duration {
		t.Errorf("the reused binary's build record says %v, the build took %v", rec2.Duration, rec1.Duration)
	}
	bin.LDFlags = []string{"-X", "main.msg=two"}
	p3, rec3, err := b.Ensure(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p1 || rec3.Reused {
		t.Errorf("changed linker flags reused %s", p3)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSweepStaleKillsOrphans starts a process group recorded as belonging
// to a harness that no longer runs; SweepStale must kill it and remove the
// record, and leave alone a record whose harness is alive.
func TestSweepStaleKillsOrphans(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("pid files use /proc")
	}
	dir := t.TempDir()
	orphan := exec.Command("sleep", "300")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- orphan.Wait() }()
	t.Cleanup(func() { _ = orphan.Process.Kill() })

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphanRec := pidRecord{Pid: orphan.Process.Pid, Start: procStartTime(orphan.Process.Pid), Path: "sleep",
		Harness: dead.Process.Pid, HarnessStart: 12345}
	if err := writePidRecord(filepath.Join(dir, "orphan.json"), orphanRec); err != nil {
		t.Fatal(err)
	}
	liveRec := pidRecord{Pid: orphan.Process.Pid, Start: orphanRec.Start, Path: "sleep",
		Harness: os.Getpid(), HarnessStart: procStartTime(os.Getpid())}
	if err := writePidRecord(filepath.Join(dir, "live.json"), liveRec); err != nil {
		t.Fatal(err)
	}
	swept, err := SweepStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"orphan.json"}, swept); diff != "" {
		t.Errorf("swept (-want +got):\n%s", diff)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the orphan process was not killed")
	}
	if _, err := os.Stat(filepath.Join(dir, "live.json")); err != nil {
		t.Errorf("the live harness's record was removed: %v", err)
	}
}

// TestSupervisorStopsProcessGroup checks that Stop takes down the whole
// process group (a shell and the child it started), and that Stop
// escalates to SIGKILL for a process ignoring SIGTERM.
func TestSupervisorStopsProcessGroup(t *testing.T) {
	run := t.TempDir()
	s, err := NewSupervisor(run, filepath.Join(run, "pids"), nil)
	if err != nil {
		t.Fatal(err)
	}
	childPid := filepath.Join(run, "child.pid")
	p, err := s.Start(ProcessSpec{Name: "stubborn", Path: "/bin/sh",
		Args: []string{"-c", "trap '' TERM; sleep 300 & echo $! > " + childPid + "; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	Eventually(t, 10*time.Second, "the child pid", func(context.Context) (bool, error) {
		b, err := os.ReadFile(childPid)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return false, nil
		}
		return json.Unmarshal([]byte(strings.TrimSpace(string(b))), &child) == nil, nil
	})
	pidFiles, _ := filepath.Glob(filepath.Join(run, "pids", "*.json"))
	if len(pidFiles) != 1 {
		t.Errorf("pid files %v, want one", pidFiles)
	}
	start := time.Now()
	s.StopAll(500 * time.Millisecond)
	if p.Running() {
		t.Error("the process survived Stop")
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("Stop took %v", time.Since(start))
	}
	Eventually(t, 10*time.Second, "the child to die", func(context.Context) (bool, error) {
		return procStartTime(child) == 0 || isZombie(child), nil
	})
	if pidFiles, _ := filepath.Glob(filepath.Join(run, "pids", "*.json")); len(pidFiles) != 0 {
		t.Errorf("pid files left after Stop: %v", pidFiles)
	}
	if !strings.Contains(p.Tail(1000), "sleep 300") {
		t.Errorf("the log does not record the command line: %q", p.Tail(1000))
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + fmtInt(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func unstructuredField(obj map[string]any, fields ...string) (any, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur, ok = m[f]
		if !ok {
			return nil, false, nil
		}
	}
	return cur, true, nil
}

func TestDecodeYAMLSkipsEmptyDocuments(t *testing.T) {
	objs, err := DecodeYAML(strings.NewReader("---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if diff := cmp.Diff([]string{"ConfigMap/a", "Secret/b"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := DecodeYAML(strings.NewReader("metadata: {name: x}\n")); err == nil {
		t.Error("a document without apiVersion and kind was accepted")
	}
}
