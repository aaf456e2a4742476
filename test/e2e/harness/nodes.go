package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ArchTaintKey taints non-amd64 nodes (value: the architecture, effect
// NoSchedule), as GKE taints its Arm nodes: the scheduler ignores image
// platforms, so only pods that tolerate it (and select the architecture,
// as ciel's per-architecture builds do) land there.
const ArchTaintKey = "kubernetes.io/arch"

// NodeSpec is a real node of the cluster: its own containerd and kubelet.
type NodeSpec struct {
	Name string
	// Arch is the kubelet's architecture: "amd64", or "arm64" (an arm64
	// kubelet run by qemu-user; containerd, runc and the kernel stay
	// amd64).
	Arch string
}

// DefaultClusterNodes are the suite's nodes: ciel-amd64 and ciel-arm64.
func DefaultClusterNodes() []NodeSpec {
	return []NodeSpec{{Name: "ciel-amd64", Arch: "amd64"}, {Name: "ciel-arm64", Arch: "arm64"}}
}

// ClusterConfig says what StartCluster runs.
type ClusterConfig struct {
	// RunDir holds the PKI, kubeconfigs, etcd data, the nodes' state and the
	// logs. It is emptied first (see CleanupRunDir).
	RunDir string
	// PidDir holds the pid files SweepStale reads.
	PidDir string
	// Binaries maps program names (see Prepared.Binaries) to paths.
	Binaries map[string]string
	// PauseImage is the sandbox image every containerd pulls (e.g.
	// RegistryHost + "/ciel/pause:1"); it must be in the registry before
	// the first pod starts.
	PauseImage string
	// Nodes default to DefaultClusterNodes.
	Nodes []NodeSpec
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
	// Out receives one line per node as it becomes Ready:
	// "node NAME Ready arch=ARCH kubelet=VERSION" (default: os.Stdout).
	Out io.Writer
}

// ClusterNode is a running node.
type ClusterNode struct {
	NodeSpec
	Index int
	// Dir holds the node's containerd and kubelet state.
	Dir string
	// Socket is the node's containerd socket.
	Socket              string
	Containerd, Kubelet *Process
	// ReadyAfter is how long the node took from its kubelet's start to
	// Ready.
	ReadyAfter time.Duration
}

// Cluster is a running cluster inside NetNS: control plane, scheduler, one
// containerd + kubelet per node, kube-proxy and CoreDNS.
type Cluster struct {
	*ControlPlane
	Nodes []*ClusterNode
	// StuckForks counts the emulated kubelets' forked children killed by
	// the fork watchdog (see unstickForks).
	StuckForks atomic.Int64

	cfg          ClusterConfig
	logger       *slog.Logger
	stopWatchdog []context.CancelFunc
}

// NodeNames returns the nodes' names.
func (c *Cluster) NodeNames() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// RunDir, SealDir and PidDir are the suite's directories under a cache dir.
func RunDir(cache string) string  { return filepath.Join(cache, "run") }
func SealDir(cache string) string { return filepath.Join(cache, "seal") }
func PidDir(cache string) string  { return filepath.Join(cache, "pids") }

// DefaultCacheDir is $CIEL_E2E_CACHE, else ~/.cache/ciel-e2e.
func DefaultCacheDir() (string, error) { return defaultCacheDir() }

// InNetNS reports an error unless the caller runs inside the sealed
// namespace: NodeIP on a local interface and no default route.
func InNetNS() error {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return err
	}
	found := false
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == NodeIP {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("not inside the sealed network namespace %s (no %s here): run through cmd/e2e-run", NetNS, NodeIP)
	}
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "00000000" {
			return fmt.Errorf("the network namespace has a default route (%s): refusing to start", line)
		}
	}
	return nil
}

// ClusterConfigFromPrepared returns the configuration for the default
// nodes with the prepared binaries and the run, pid directories of its
// cache.
func ClusterConfigFromPrepared(p *Prepared, pauseImage string) ClusterConfig {
	return ClusterConfig{RunDir: RunDir(p.CacheDir), PidDir: PidDir(p.CacheDir), Binaries: p.Binaries, PauseImage: pauseImage}
}

// StartRegistry starts Debian's docker-registry (distribution) on
// RegistryHost through sup, with its storage in storageDir (kept across
// runs: images pushed once are reused), and waits until it answers.
func StartRegistry(ctx context.Context, sup *Supervisor, storageDir string) (*Process, error) {
	if err := os.MkdirAll(storageDir, 0o755); err != nil {
		return nil, fmt.Errorf("starting the registry: %w", err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage:\n  filesystem: {rootdirectory: %s}\n  delete: {enabled: true}\nhttp:\n  addr: %s\n",
		storageDir, RegistryHost)
	path := storageDir + ".yml"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("starting the registry: %w", err)
	}
	p, err := sup.Start(ProcessSpec{Name: "registry", Path: "/usr/bin/docker-registry", Args: []string{"serve", path}})
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, 30*time.Second, 100*time.Millisecond, "registry", "http://"+RegistryHost+"/v2/"); err != nil {
		p.Stop(time.Second)
		return nil, err
	}
	return p, nil
}

// StartCluster starts the cluster inside NetNS. On error, whatever was
// started is stopped. The caller must Stop it.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = discardLogger()
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = DefaultClusterNodes()
	}
	if cfg.PauseImage == "" {
		return nil, errors.New("starting the cluster: no pause image")
	}
	if cfg.RunDir == "" || cfg.PidDir == "" {
		return nil, errors.New("starting the cluster: RunDir and PidDir are required")
	}
	for _, n := range cfg.Nodes {
		if n.Name == "" || (n.Arch != "amd64" && n.Arch != "arm64") {
			return nil, fmt.Errorf("starting the cluster: node %+v needs a name and arch amd64 or arm64", n)
		}
		if cfg.Binaries[kubeletBinary(n.Arch)] == "" {
			return nil, fmt.Errorf("starting the cluster: no %s binary", kubeletBinary(n.Arch))
		}
	}
	for _, b := range []string{"kube-scheduler", "kube-proxy", "coredns"} {
		if cfg.Binaries[b] == "" {
			return nil, fmt.Errorf("starting the cluster: no %s binary", b)
		}
	}
	if err := InNetNS(); err != nil {
		return nil, fmt.Errorf("starting the cluster: %w", err)
	}
	if swept, err := SweepStale(cfg.PidDir); err != nil {
		return nil, err
	} else if len(swept) > 0 {
		logger.Warn("removed processes left by a previous run that was killed", "pidfiles", swept)
	}
	if err := CleanupRunDir(cfg.RunDir, logger); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(cfg.RunDir); err != nil {
		return nil, fmt.Errorf("starting the cluster: emptying %s: %w", cfg.RunDir, err)
	}
	start := time.Now()
	cp, err := StartControlPlane(ctx, ControlPlaneConfig{RunDir: cfg.RunDir, PidDir: cfg.PidDir, Binaries: cfg.Binaries, Logger: logger})
	if err != nil {
		return nil, err
	}
	c := &Cluster{ControlPlane: cp, cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			c.Stop()
			err = fmt.Errorf("%w (logs in %s)", err, cp.Supervisor.LogDir())
		}
	}()
	err = runPhases(ctx, logger, "cluster", &cp.Phases, []phase{
		{"kube-scheduler", c.startScheduler},
		{"nodes", c.startNodes},
		{"kube-proxy", c.startKubeProxy},
		{"coredns", c.startCoreDNS},
	})
	if err != nil {
		return nil, fmt.Errorf("starting the cluster: %w", err)
	}
	logger.Info("cluster up", "took", time.Since(start).Round(time.Millisecond), "kubeconfig", cp.Kubeconfig)
	return c, nil
}

func kubeletBinary(arch string) string {
	if arch == "amd64" {
		return "kubelet"
	}
	return "kubelet-" + arch
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	p, err := c.Supervisor.Start(ProcessSpec{
		Name: "kube-scheduler",
		Path: c.cfg.Binaries["kube-scheduler"],
		Args: append(componentFlags(c.Kubeconfig, schedulerPort, filepath.Join(c.cfg.RunDir, "scheduler-certs")),
			"--profiling=false"),
	})
	if err != nil {
		return err
	}
	return waitHealthy(ctx, p, 60*time.Second, 200*time.Millisecond, "kube-scheduler /healthz", "https://127.0.0.1:"+strconv.Itoa(schedulerPort)+"/healthz")
}

// writeKubeconfigFile writes a kubeconfig for the apiserver with the
// client certificate of user.
func writeKubeconfigFile(path, user, caCert, cert, key string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["ciel-e2e"] = &clientcmdapi.Cluster{Server: APIServerURL, CertificateAuthority: caCert}
	c.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: cert, ClientKey: key}
	c.Contexts["ciel-e2e"] = &clientcmdapi.Context{Cluster: "ciel-e2e", AuthInfo: user}
	c.CurrentContext = "ciel-e2e"
	if err := clientcmd.WriteToFile(*c, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// cgroupRoot is a node's kubelet cgroupRoot: its own subtree, since each
// kubelet removes pod cgroups it does not know.
func cgroupRoot(node string) string { return "/ciel-e2e-" + node }

// cgroupDirs returns a node's cgroup directories: one per mounted v1
// hierarchy (the kubelet wants the path in all of them), or one on v2.
func cgroupDirs(node string) []string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return []string{"/sys/fs/cgroup" + cgroupRoot(node)}
	}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	var out []string
	for _, e := range entries {
		h := filepath.Join("/sys/fs/cgroup", e.Name())
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil {
			out = append(out, h+cgroupRoot(node))
		}
	}
	return out
}

func (c *Cluster) startNodes(ctx context.Context) error {
	for i, spec := range c.cfg.Nodes {
		n, err := c.startNode(ctx, i, spec)
		if err != nil {
			return fmt.Errorf("node %s: %w", spec.Name, err)
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c.waitNodesReady(ctx)
}

func (c *Cluster) startNode(ctx context.Context, i int, spec NodeSpec) (*ClusterNode, error) {
	dir := filepath.Join(c.cfg.RunDir, "nodes", spec.Name)
	n := &ClusterNode{NodeSpec: spec, Index: i, Dir: dir, Socket: filepath.Join(dir, "containerd.sock")}
	certsD := filepath.Join(dir, "certs.d")
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "pki", filepath.Join("certs.d", RegistryHost)} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	for _, d := range cgroupDirs(spec.Name) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating its cgroup: %w", err)
		}
	}
	// containerd 1.6 speaks plain HTTP to a non-loopback registry only when
	// a hosts.toml says so.
	hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+RegistryHost, "http://"+RegistryHost)
	files := map[string]string{
		filepath.Join(certsD, RegistryHost, "hosts.toml"): hosts,
		filepath.Join(dir, "containerd.toml"):             containerdConfig(dir, c.cfg.PauseImage),
		filepath.Join(dir, "cni/net.d/10-cbr.conflist"):   cniConfig(i, dir),
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	ctrd, err := c.Supervisor.Start(ProcessSpec{
		Name: "containerd-" + spec.Name,
		Path: "/usr/bin/containerd",
		Args: []string{"--config", filepath.Join(dir, "containerd.toml")},
	})
	if err != nil {
		return nil, err
	}
	n.Containerd = ctrd
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitUntil(wctx, 100*time.Millisecond, "containerd "+spec.Name, func(ctx context.Context) (bool, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, "unix", n.Socket)
		if err != nil {
			return false, err
		}
		conn.Close()
		return true, nil
	}, ctrd); err != nil {
		return nil, err
	}
	cert, key, err := c.PKI.IssueClient("node-"+spec.Name, "system:node:"+spec.Name, "system:nodes")
	if err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfigFile(kubeconfig, "user", c.PKI.CACert, cert, key); err != nil {
		return nil, err
	}
	kcfg := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(kubeletConfig(i, spec, dir, c.PKI.CACert)), 0o644); err != nil {
		return nil, err
	}
	kubelet, err := c.Supervisor.Start(ProcessSpec{
		Name: "kubelet-" + spec.Name,
		Path: c.cfg.Binaries[kubeletBinary(spec.Arch)],
		Args: []string{
			"--config=" + kcfg,
			"--kubeconfig=" + kubeconfig,
			"--root-dir=" + filepath.Join(dir, "kubelet"),
			"--cert-dir=" + filepath.Join(dir, "pki"),
			"--hostname-override=" + spec.Name,
			"--node-ip=" + NodeIP,
		},
		// No iptables on PATH: the kubelet then adds no KUBE-FIREWALL and
		// canary chains (kube-proxy owns the namespace's rules).
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
	})
	if err != nil {
		return nil, err
	}
	n.Kubelet = kubelet
	if spec.Arch != runtime.GOARCH {
		wctx, cancel := context.WithCancel(context.Background())
		c.stopWatchdog = append(c.stopWatchdog, cancel)
		go unstickForks(wctx, kubelet.Pid, spec.Name, stuckForkAge, c.logger, &c.StuckForks)
	}
	return n, nil
}

// stuckForkAge is how long a forked child of an emulated kubelet may keep
// its parent's command line (not yet exec'd) before the watchdog kills it.
const stuckForkAge = 15 * time.Second

// unstickForks works around a qemu-user 7.2 (Debian bookworm) fault: a
// forked child of a multi-threaded emulated program sometimes deadlocks
// before it execs (seen: the arm64 kubelet's `mount -t tmpfs` for Tekton's
// Memory emptyDirs, the child stuck in futex_wait with the kubelet's own
// command line for minutes, the pod Pending). It kills such children of
// pid once they are older than maxAge; the kubelet sees the mount
// fail and retries it (verified: the pod then starts). Normal children
// exec within microseconds. A real arm64 node has no such fault.
func unstickForks(ctx context.Context, pid int, node string, maxAge time.Duration, logger *slog.Logger, killed *atomic.Int64) {
	var parent []byte
	first := map[int]time.Time{}
	t := time.NewTicker(maxAge / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if len(parent) == 0 {
			// Read at the first tick, not at once: exec lets its parent
			// go on before the new command line is in place, and reading
			// it then gives nothing (the watchdog would match no child).
			cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil && errors.Is(err, fs.ErrNotExist) {
				return // the process is gone
			}
			if parent = cmd; len(parent) == 0 {
				continue
			}
		}
		entries, err := os.ReadDir("/proc")
		if err != nil {
			continue
		}
		now := time.Now()
		alive := map[int]bool{}
		for _, e := range entries {
			child, err := strconv.Atoi(e.Name())
			if err != nil || procParent(child) != pid {
				continue
			}
			cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
			if err != nil || !bytes.Equal(cmd, parent) {
				continue
			}
			alive[child] = true
			since, ok := first[child]
			if !ok {
				first[child] = now
				continue
			}
			if now.Sub(since) >= maxAge {
				// Counted before the kill: the parent may go on (and a
				// reader look) as soon as the child is gone.
				killed.Add(1)
				if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
					killed.Add(-1)
				} else {
					logger.Warn("killed a forked child of the emulated kubelet stuck before exec (qemu-user); the kubelet retries", "node", node, "pid", child, "stuck", now.Sub(since).Round(time.Second))
				}
			}
		}
		for p := range first {
			if !alive[p] {
				delete(first, p)
			}
		}
	}
}

// procParent returns pid's parent process ID, or -1.
func procParent(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

func containerdConfig(dir, pauseImage string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  # without CAP_SYS_RESOURCE runc cannot lower oom_score_adj (pause asks -998)
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[6]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
`, filepath.Join(dir, "containerd/root"), filepath.Join(dir, "containerd/state"), filepath.Join(dir, "containerd.sock"),
		filepath.Join(dir, "containerd/opt"), pauseImage, filepath.Join(dir, "runc"), filepath.Join(dir, "cni/net.d"),
		filepath.Join(dir, "certs.d"))
}

// podSubnet is node i's pod range.
func podSubnet(i int) string { return fmt.Sprintf("10.244.%d.0/24", i+1) }

func cniConfig(i int, dir string) string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "`+CNINetworkPrefix+`cbr%[1]d", "plugins": [
  {"type": "bridge", "bridge": "cbr%[1]d", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": %[2]q}]], "dataDir": %[3]q}}]}
`, i, podSubnet(i), filepath.Join(dir, "cni/ipam"))
}

func kubeletConfig(i int, spec NodeSpec, dir, caCert string) string {
	port := kubeletPortBase + 10*i
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
failSwapOn: false
containerRuntimeEndpoint: unix://%[2]s
address: %[3]s
port: %[4]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[5]d
podLogsDir: %[6]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[7]s}
authorization: {mode: Webhook}
clusterDomain: %[8]s
clusterDNS: [%[3]s]
resolvConf: /etc/resolv.conf
maxPods: 50
serializeImagePulls: false
# ConfigMap volumes (the interceptor's policies) follow an edit within
# about this period (default 1m).
syncFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
`, cgroupRoot(spec.Name), filepath.Join(dir, "containerd.sock"), NodeIP, port, port+8, filepath.Join(dir, "pod-logs"), caCert, ClusterDomain)
	if spec.Arch != "amd64" {
		cfg += fmt.Sprintf("registerWithTaints: [{key: %s, value: %s, effect: NoSchedule}]\n", ArchTaintKey, spec.Arch)
	}
	return cfg
}

// waitNodesReady waits for every node to be Ready, printing one line per
// node as it becomes so.
func (c *Cluster) waitNodesReady(ctx context.Context) error {
	start := time.Now()
	pending := map[string]*ClusterNode{}
	for _, n := range c.Nodes {
		pending[n.Name] = n
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var watch []*Process
	for _, n := range c.Nodes {
		watch = append(watch, n.Containerd, n.Kubelet)
	}
	return waitUntil(wctx, 250*time.Millisecond, "nodes Ready", func(ctx context.Context) (bool, error) {
		list, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			node := &list.Items[i]
			n := pending[node.Name]
			if n == nil || !nodeIsReady(node) {
				continue
			}
			n.ReadyAfter = time.Since(start)
			delete(pending, node.Name)
			fmt.Fprintf(c.cfg.Out, "node %s Ready arch=%s kubelet=%s\n", node.Name, node.Status.NodeInfo.Architecture, node.Status.NodeInfo.KubeletVersion)
		}
		if len(pending) > 0 {
			var names []string
			for name := range pending {
				names = append(names, name)
			}
			sort.Strings(names)
			return false, fmt.Errorf("not Ready yet: %s", strings.Join(names, ", "))
		}
		return true, nil
	}, watch...)
}

func nodeIsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startKubeProxy starts one kube-proxy (iptables mode) for the whole
// cluster: every node's pod bridge is in NetNS. It waits for its Node, so it
// starts once the nodes are Ready.
func (c *Cluster) startKubeProxy(ctx context.Context) error {
	cert, key, err := c.PKI.IssueClient("kube-proxy", "system:kube-proxy")
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(c.cfg.RunDir, "kube-proxy.kubeconfig")
	if err := writeKubeconfigFile(kubeconfig, "user", c.PKI.CACert, cert, key); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: %[1]s}
hostnameOverride: %[2]s
clusterCIDR: %[3]s
bindAddress: %[4]s
healthzBindAddress: 127.0.0.1:%[5]d
metricsBindAddress: 127.0.0.1:%[6]d
nodePortAddresses: ["%[4]s/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
`, kubeconfig, c.cfg.Nodes[0].Name, PodCIDR, NodeIP, kubeProxyPort, kubeProxyPort+1)
	path := filepath.Join(c.cfg.RunDir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := c.Supervisor.Start(ProcessSpec{Name: "kube-proxy", Path: c.cfg.Binaries["kube-proxy"], Args: []string{"--config=" + path}})
	if err != nil {
		return err
	}
	return waitHealthy(ctx, p, 60*time.Second, 200*time.Millisecond, "kube-proxy /healthz", "http://127.0.0.1:"+strconv.Itoa(kubeProxyPort)+"/healthz")
}

// startCoreDNS serves cluster.local on NodeIP:53 (the kubelets' clusterDNS)
// from the apiserver; no forward plugin, so no outside name resolves.
func (c *Cluster) startCoreDNS(ctx context.Context) error {
	corefile := fmt.Sprintf(`.:53 {
    bind %[1]s
    errors
    health 127.0.0.1:%[2]d
    ready 127.0.0.1:%[3]d
    kubernetes %[4]s in-addr.arpa ip6.arpa {
        kubeconfig %[5]s ciel-e2e
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
`, NodeIP, corednsHealthPort, corednsHealthPort+1, ClusterDomain, c.Kubeconfig)
	path := filepath.Join(c.cfg.RunDir, "Corefile")
	if err := os.WriteFile(path, []byte(corefile), 0o644); err != nil {
		return err
	}
	p, err := c.Supervisor.Start(ProcessSpec{Name: "coredns", Path: c.cfg.Binaries["coredns"], Args: []string{"-conf", path}})
	if err != nil {
		return err
	}
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(NodeIP, "53"))
	}}
	name := "kubernetes.default.svc." + ClusterDomain
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitUntil(wctx, 250*time.Millisecond, "CoreDNS resolving "+name, func(ctx context.Context) (bool, error) {
		ips, err := r.LookupHost(ctx, name)
		if err != nil {
			return false, err
		}
		return len(ips) == 1 && ips[0] == KubernetesServiceIP, fmt.Errorf("%s resolved to %v", name, ips)
	}, p)
}

// Stop tears the cluster down: workload pods first (so that kubelets unmount
// their volumes), then kubelets, containerd tasks and containerds, then
// everything else the supervisor started, then mounts, cgroups and bridges.
func (c *Cluster) Stop() {
	for _, stop := range c.stopWatchdog {
		stop()
	}
	if n := c.StuckForks.Load(); n > 0 {
		c.logger.Warn("the fork watchdog killed stuck children of emulated kubelets", "count", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if c.Kube != nil && len(c.Nodes) > 0 {
		c.deleteWorkloads(ctx)
	}
	for _, n := range c.Nodes {
		if n.Kubelet != nil {
			n.Kubelet.Stop(10 * time.Second)
		}
	}
	for _, n := range c.Nodes {
		removeContainers(ctx, n.Socket, c.logger)
		if n.Containerd != nil {
			n.Containerd.Stop(10 * time.Second)
		}
		killShims(n.Socket)
	}
	if c.ControlPlane != nil {
		c.ControlPlane.Stop()
	}
	if err := CleanupRunDir(c.cfg.RunDir, c.logger); err != nil {
		c.logger.Error("cleaning up the run directory", "err", err)
	}
	for i := range c.cfg.Nodes {
		_ = exec.Command("ip", "link", "del", fmt.Sprintf("cbr%d", i)).Run()
	}
}

// deleteWorkloads deletes the non-system namespaces and the pods of the
// default namespace, and waits (bounded) until no pod is left.
func (c *Cluster) deleteWorkloads(ctx context.Context) {
	system := map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true}
	nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		c.logger.Warn("listing namespaces for teardown", "err", err)
		return
	}
	for _, ns := range nss.Items {
		if !system[ns.Name] {
			_ = c.Kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		}
	}
	zero := int64(1)
	_ = c.Kube.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err = waitUntil(wctx, 500*time.Millisecond, "pods deleted", func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0, fmt.Errorf("%d pods left", len(pods.Items))
	})
	if err != nil {
		c.logger.Warn("tearing down", "err", err)
	}
}

// removeContainers kills and deletes every task and container of a
// containerd (shims outlive containerd otherwise).
func removeContainers(ctx context.Context, socket string, logger *slog.Logger) {
	if _, err := os.Stat(socket); err != nil {
		return
	}
	ctr := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", socket, "-n", "k8s.io"}, args...)...).CombinedOutput()
		return string(out), err
	}
	tasks, _ := ctr("tasks", "ls", "-q")
	for _, id := range strings.Fields(tasks) {
		_, _ = ctr("tasks", "kill", "-s", "SIGKILL", id)
	}
	if len(strings.Fields(tasks)) > 0 {
		time.Sleep(time.Second)
	}
	for _, id := range strings.Fields(tasks) {
		_, _ = ctr("tasks", "delete", "-f", id)
	}
	containers, _ := ctr("containers", "ls", "-q")
	for _, id := range strings.Fields(containers) {
		if out, err := ctr("containers", "delete", id); err != nil {
			logger.Warn("deleting a container", "id", id, "err", err, "out", out)
		}
	}
}

// killShims kills the containerd shims serving the containerd at socket
// (matched on the exact socket path in their command line).
func killShims(socket string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) == 0 || !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for i := range args[:len(args)-1] {
			if args[i] == "-address" && args[i+1] == socket {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// CleanupRunDir removes what a cluster in runDir may have left on the host
// (also after a killed run): processes in the nodes' cgroups, shims of the
// nodes' containerds, mounts under runDir, the nodes' cgroups.
func CleanupRunDir(runDir string, logger *slog.Logger) error {
	if logger == nil {
		logger = discardLogger()
	}
	nodesDir := filepath.Join(runDir, "nodes")
	entries, _ := os.ReadDir(nodesDir)
	var nodes []string
	for _, e := range entries {
		if e.IsDir() {
			nodes = append(nodes, e.Name())
		}
	}
	for _, n := range nodes {
		killShims(filepath.Join(nodesDir, n, "containerd.sock"))
		for _, d := range cgroupDirs(n) {
			killCgroupTree(d)
		}
	}
	var errs []error
	mounts := mountPoints()
	var ours []string
	prefix := strings.TrimSuffix(runDir, "/") + "/"
	for _, m := range mounts {
		if strings.HasPrefix(m, prefix) {
			ours = append(ours, m)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ours)))
	for _, m := range ours {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	if len(ours) > 0 {
		logger.Info("unmounted", "count", len(ours), "under", runDir)
	}
	for _, n := range nodes {
		for _, d := range cgroupDirs(n) {
			if err := removeCgroupTree(d); err != nil {
				errs = append(errs, err)
			}
		}
		removeCNIResults(filepath.Join(nodesDir, n))
	}
	return errors.Join(errs...)
}

// removeCNIResults removes libcni's cached results (in /var/lib/cni/results,
// global) of the node's pod sandboxes, which a killed run leaves.
func removeCNIResults(nodeDir string) {
	sandboxes, _ := os.ReadDir(filepath.Join(nodeDir, "containerd/root/io.containerd.grpc.v1.cri/sandboxes"))
	for _, sb := range sandboxes {
		if len(sb.Name()) < 12 || strings.ContainsAny(sb.Name(), "*?[/") {
			continue
		}
		matches, _ := filepath.Glob("/var/lib/cni/results/*-" + sb.Name() + "-*")
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
}

// killCgroupTree SIGKILLs every process in the cgroup dir and below.
func killCgroupTree(dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		return nil
	})
}

// removeCgroupTree removes the cgroup dir and its children, deepest first,
// retrying briefly while killed processes exit.
func removeCgroupTree(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	var last error
	for attempt := 0; attempt < 20; attempt++ {
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		last = nil
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
		}
		if last == nil {
			return nil
		}
		killCgroupTree(dir)
		time.Sleep(250 * time.Millisecond)
	}
	return last
}

// Down tears down what a run under cache left (processes recorded in its
// pid files, the nodes' containers, mounts and cgroups) and unseals the
// host. It is what e2e-run does after every run and alone with -down.
func Down(ctx context.Context, cache string, logger *slog.Logger) error {
	if logger == nil {
		logger = discardLogger()
	}
	var errs []error
	if swept, err := SweepStale(PidDir(cache)); err != nil {
		errs = append(errs, err)
	} else if len(swept) > 0 {
		logger.Warn("killed processes a run left", "pidfiles", swept)
	}
	if err := CleanupRunDir(RunDir(cache), logger); err != nil {
		errs = append(errs, err)
	}
	if err := Unseal(ctx, SealDir(cache), logger); err != nil {
		errs = append(errs, err)
	}
	// Processes killed by Unseal may have held mounts.
	if err := CleanupRunDir(RunDir(cache), logger); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
