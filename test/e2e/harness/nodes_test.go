package harness

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

func TestKubeletConfigPerNode(t *testing.T) {
	for i, spec := range DefaultClusterNodes() {
		t.Run(spec.Name, func(t *testing.T) {
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(kubeletConfig(i, spec, "/run/n", "/pki/ca.crt")), &cfg); err != nil {
				t.Fatal(err)
			}
			for k, want := range map[string]any{
				"failCgroupV1": false, "cgroupDriver": "cgroupfs", "failSwapOn": false,
				"cgroupRoot": "/ciel-e2e-" + spec.Name, "address": NodeIP, "port": float64(20250 + 10*i),
				"healthzPort": float64(20258 + 10*i), "readOnlyPort": float64(0),
				"containerRuntimeEndpoint": "unix:///run/n/containerd.sock", "podLogsDir": "/run/n/pod-logs",
				"imageGCHighThresholdPercent": float64(100), "clusterDomain": ClusterDomain,
			} {
				if cfg[k] != want {
					t.Errorf("%s = %v, want %v", k, cfg[k], want)
				}
			}
			if dns, _ := cfg["clusterDNS"].([]any); len(dns) != 1 || dns[0] != NodeIP {
				t.Errorf("clusterDNS = %v, want [%s]", cfg["clusterDNS"], NodeIP)
			}
			taints, _ := cfg["registerWithTaints"].([]any)
			if spec.Arch == "amd64" && taints != nil {
				t.Errorf("amd64 node tainted: %v", taints)
			}
			if spec.Arch == "arm64" {
				if len(taints) != 1 || taints[0].(map[string]any)["key"] != ArchTaintKey || taints[0].(map[string]any)["effect"] != "NoSchedule" {
					t.Errorf("arm64 taints = %v", taints)
				}
			}
		})
	}
}

func TestCNIAndContainerdConfig(t *testing.T) {
	var conf struct {
		Plugins []struct {
			Type             string `json:"type"`
			Bridge           string `json:"bridge"`
			IsDefaultGateway bool   `json:"isDefaultGateway"`
			IPAM             struct {
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(cniConfig(1, "/n")), &conf); err != nil {
		t.Fatal(err)
	}
	p := conf.Plugins[0]
	if p.Type != "bridge" || p.Bridge != "cbr1" || !p.IsDefaultGateway || p.IPAM.Ranges[0][0].Subnet != "10.244.2.0/24" {
		t.Errorf("CNI config %+v", p)
	}
	c := containerdConfig("/n", RegistryHost+"/ciel/pause:1")
	for _, want := range []string{`sandbox_image = "10.255.255.1:5000/ciel/pause:1"`, "restrict_oom_score_adj = true",
		"SystemdCgroup = false", `Root = "/n/runc"`, `bin_dir = "/usr/lib/cni"`, `address = "/n/containerd.sock"`, `config_path = "/n/certs.d"`} {
		if !strings.Contains(c, want) {
			t.Errorf("containerd config lacks %s:\n%s", want, c)
		}
	}
}

func TestBuilderKeysByArch(t *testing.T) {
	mod := t.TempDir()
	write(t, filepath.Join(mod, "go.mod"), "module example.com/hello\n\ngo 1.22\n")
	write(t, filepath.Join(mod, "go.sum"), "")
	b := &Builder{Dir: t.TempDir()}
	bin := Binary{Name: "hello", ModuleDir: mod, Package: "example.com/hello", Version: "v1"}
	ctx := context.Background()
	paths := map[string]bool{}
	for _, arch := range []string{"", "amd64", "arm64"} {
		bin.GOARCH = arch
		p, err := b.Path(ctx, bin)
		if err != nil {
			t.Fatal(err)
		}
		paths[p] = true
	}
	// "" is the host's architecture: the same key as amd64 on amd64 hosts.
	if len(paths) < 2 {
		t.Errorf("GOARCH does not change the cache key: %v", paths)
	}
}

// nodeBinaries returns the binaries the nodes run, as this module lists
// them.
func nodeBinaries(t *testing.T) map[string]Binary {
	t.Helper()
	root, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bins, err := NodeBinaries(root)
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

func TestNodeBinariesArchitectures(t *testing.T) {
	bins := nodeBinaries(t)
	for name, arch := range map[string]string{"kubelet-arm64": "arm64", "kaniko-executor-arm64": "arm64", "pause-arm64": "arm64",
		"kaniko-executor-amd64": "amd64", "pause-amd64": "amd64"} {
		if bins[name].GOARCH != arch {
			t.Errorf("%s GOARCH %q, want %s", name, bins[name].GOARCH, arch)
		}
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "coredns"} {
		b, ok := bins[name]
		if !ok || b.GOARCH != "" {
			t.Errorf("%s: %+v", name, b)
		}
		if _, err := os.Stat(filepath.Join(b.ModuleDir, "go.mod")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestCleanupRunDirAfterKilledRun leaves what a killed run leaves — a mount
// under the run directory, a node's cgroups with a process in them — and
// checks that CleanupRunDir removes all of it (root only).
func TestCleanupRunDirAfterKilledRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	run := t.TempDir()
	node := "cleanup-test-" + randomSuffix()
	mnt := filepath.Join(run, "nodes", node, "kubelet", "pods", "x", "volumes")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	defer syscall.Unmount(mnt, syscall.MNT_DETACH)
	dirs := cgroupDirs(node)
	if len(dirs) == 0 {
		t.Skip("no cgroup hierarchy")
	}
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleeper.Process.Kill()
	go func() { _ = sleeper.Wait() }()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(d, "pod1"), 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(d)
	}
	// One hierarchy is enough to hold the process.
	if err := os.WriteFile(filepath.Join(dirs[0], "pod1", "cgroup.procs"), []byte(strconv.Itoa(sleeper.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CleanupRunDir(run, nil); err != nil {
		t.Fatal(err)
	}
	if isMountPoint(mnt) {
		t.Errorf("%s is still mounted", mnt)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s still exists", d)
		}
	}
	if err := syscall.Kill(sleeper.Process.Pid, 0); err == nil {
		time.Sleep(500 * time.Millisecond)
		if procStartTime(sleeper.Process.Pid) != 0 && !isZombie(sleeper.Process.Pid) {
			t.Errorf("the process in the node's cgroup survived")
		}
	}
}

// TestPauseExitsOnTerm builds the sandbox program and checks it keeps
// running until SIGTERM, then exits 0.
func TestPauseExitsOnTerm(t *testing.T) {
	bins := nodeBinaries(t)
	bin := bins["pause-"+runtime.GOARCH]
	if bin.Name == "" {
		t.Skipf("no pause for %s", runtime.GOARCH)
	}
	path, _, err := (&Builder{Dir: t.TempDir()}).Ensure(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("pause exited by itself: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pause on SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("pause ignored SIGTERM")
	}
}
