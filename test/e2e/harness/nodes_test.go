package harness

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func TestNodeBinariesArchitectures(t *testing.T) {
	root, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bins, err := NodeBinaries(root)
	if err != nil {
		t.Fatal(err)
	}
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
