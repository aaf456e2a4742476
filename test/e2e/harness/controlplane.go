package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"
)

// SystemNamespace is where Tekton's configuration lives.
const SystemNamespace = "tekton-pipelines"

// Node is a fake Node registered with the control plane. No kubelet runs
// for it; the pod runner binds pods to it and reports their status.
type Node struct {
	Name string
	// OS and Arch become the kubernetes.io/os and kubernetes.io/arch labels
	// and the node's nodeInfo.
	OS, Arch string
	// Labels are added to the well-known ones.
	Labels map[string]string
}

// DefaultNodes are one linux/amd64 and one linux/arm64 node.
func DefaultNodes() []Node {
	return []Node{
		{Name: "ciel-e2e-amd64", OS: "linux", Arch: "amd64"},
		{Name: "ciel-e2e-arm64", OS: "linux", Arch: "arm64"},
	}
}

// ControlPlaneConfig says what StartControlPlane runs and where.
type ControlPlaneConfig struct {
	// RunDir holds the PKI, the kubeconfig, etcd's data, CRD copies and logs.
	RunDir string
	// PidDir holds the supervisor's pid files (see SweepStale).
	PidDir string
	// Binaries maps a program name (see BuildModules) to its path; "etcd"
	// is the etcd server.
	Binaries map[string]string
	// PipelineDir and TriggersDir are the Tekton Pipelines and Triggers
	// module directories (from the module cache) whose config/ folders
	// provide CRDs and ConfigMaps.
	PipelineDir, TriggersDir string
	// PipelineVersion tags the images Tekton's controller is told to use.
	PipelineVersion string
	// FeatureFlags override keys of Tekton's feature-flags ConfigMap.
	FeatureFlags map[string]string
	// Nodes are registered as fake Nodes (default: DefaultNodes).
	Nodes []Node
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
}

// ControlPlane is a running kube-apiserver, etcd, kube-controller-manager
// and Tekton Pipelines controller, all on loopback.
type ControlPlane struct {
	Supervisor *Supervisor
	PKI        *PKI
	// Kubeconfig is a kubeconfig file for the admin user.
	Kubeconfig string
	// RESTConfig authenticates as the admin user (group system:masters).
	RESTConfig *rest.Config
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface
	// APIServerURL is https://127.0.0.1:PORT.
	APIServerURL string
	// EtcdURL is http://127.0.0.1:PORT.
	EtcdURL string
	// Nodes are the fake Nodes registered.
	Nodes []Node
	// Phases records how long each start-up phase took.
	Phases []Phase

	cfg    ControlPlaneConfig
	logger *slog.Logger
}

// Phase is one timed step of the start-up.
type Phase struct {
	Name     string
	Duration time.Duration
}

// StartControlPlane starts etcd, kube-apiserver and kube-controller-manager,
// installs Tekton's CRDs and configuration, registers the fake Nodes and
// starts Tekton's controller. On error, whatever was started is stopped.
func StartControlPlane(ctx context.Context, cfg ControlPlaneConfig) (_ *ControlPlane, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = discardLogger()
	}
	if len(cfg.Nodes) == 0 {
		cfg.Nodes = DefaultNodes()
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "tekton-controller"} {
		if cfg.Binaries[name] == "" {
			return nil, fmt.Errorf("starting the control plane: no %s binary", name)
		}
	}
	sup, err := NewSupervisor(cfg.RunDir, cfg.PidDir, logger)
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cp := &ControlPlane{Supervisor: sup, Nodes: cfg.Nodes, cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	phase := func(name string, f func(context.Context) error) error {
		start := time.Now()
		if err := f(ctx); err != nil {
			return fmt.Errorf("starting the control plane: %s: %w", name, err)
		}
		cp.Phases = append(cp.Phases, Phase{Name: name, Duration: time.Since(start)})
		logger.Info("control plane phase done", "phase", name, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"pki", cp.makePKI},
		{"etcd", cp.startEtcd},
		{"kube-apiserver", cp.startAPIServer},
		{"kube-controller-manager", cp.startControllerManager},
		{"crds", cp.installCRDs},
		{"tekton-config", cp.installTektonConfig},
		{"nodes", cp.registerNodes},
		{"tekton-controller", cp.startTektonController},
	}
	for _, s := range steps {
		if err := phase(s.name, s.f); err != nil {
			return nil, err
		}
	}
	return cp, nil
}

// Stop stops every process of the control plane (and any other process
// started through its Supervisor), the most recent first. The apiserver may
// need many seconds to stop with open watches, so it gets a short grace
// period and is then killed: nothing is kept between runs.
func (cp *ControlPlane) Stop() {
	if cp.Supervisor != nil {
		cp.Supervisor.StopAll(5 * time.Second)
	}
}

func (cp *ControlPlane) makePKI(context.Context) error {
	p, err := NewPKI(filepath.Join(cp.cfg.RunDir, "pki"))
	if err != nil {
		return err
	}
	cp.PKI = p
	return nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	client, peer, err := freePorts(2)
	if err != nil {
		return err
	}
	cp.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "etcd",
		Path: cp.cfg.Binaries["etcd"],
		Args: []string{
			"--name=ciel-e2e",
			"--data-dir=" + filepath.Join(cp.cfg.RunDir, "etcd-data"),
			"--listen-client-urls=" + cp.EtcdURL,
			"--advertise-client-urls=" + cp.EtcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=ciel-e2e=" + peerURL,
			"--initial-cluster-state=new",
			"--log-level=warn",
		},
	})
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitUntil(wctx, 100*time.Millisecond, "etcd /health", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, cp.EtcdURL+"/health")
	}, p)
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	cp.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(port)
	pki := cp.PKI
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "kube-apiserver",
		Path: cp.cfg.Binaries["kube-apiserver"],
		Args: []string{
			"--etcd-servers=" + cp.EtcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(cp.cfg.RunDir, "apiserver-certs"),
			"--tls-cert-file=" + pki.APIServerCert,
			"--tls-private-key-file=" + pki.APIServerKey,
			"--client-ca-file=" + pki.CACert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki.ServiceAccountPubKey,
			"--service-account-signing-key-file=" + pki.ServiceAccountKey,
			"--service-cluster-ip-range=10.0.0.0/24",
			"--authorization-mode=Node,RBAC",
			"--allow-privileged=true",
			"--endpoint-reconciler-type=none",
			"--profiling=false",
			"--v=1",
		},
	})
	if err != nil {
		return err
	}
	if err := cp.writeKubeconfig(); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", cp.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	cp.RESTConfig = cfg
	if cp.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	if cp.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return waitUntil(wctx, 200*time.Millisecond, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		b, err := cp.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok", err
	}, p)
}

func (cp *ControlPlane) writeKubeconfig() error {
	cp.Kubeconfig = filepath.Join(cp.cfg.RunDir, "kubeconfig")
	c := clientcmdapi.NewConfig()
	c.Clusters["ciel-e2e"] = &clientcmdapi.Cluster{Server: cp.APIServerURL, CertificateAuthority: cp.PKI.CACert}
	c.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: cp.PKI.AdminCert, ClientKey: cp.PKI.AdminKey}
	c.Contexts["ciel-e2e"] = &clientcmdapi.Context{Cluster: "ciel-e2e", AuthInfo: "admin"}
	c.CurrentContext = "ciel-e2e"
	if err := clientcmd.WriteToFile(*c, cp.Kubeconfig); err != nil {
		return fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return nil
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "kube-controller-manager",
		Path: cp.cfg.Binaries["kube-controller-manager"],
		Args: []string{
			"--kubeconfig=" + cp.Kubeconfig,
			"--authentication-kubeconfig=" + cp.Kubeconfig,
			"--authorization-kubeconfig=" + cp.Kubeconfig,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(cp.cfg.RunDir, "kcm-certs"),
			"--leader-elect=false",
			"--use-service-account-credentials=false",
			"--service-account-private-key-file=" + cp.PKI.ServiceAccountKey,
			"--root-ca-file=" + cp.PKI.CACert,
			"--service-cluster-ip-range=10.0.0.0/24",
			// No kubelet renews the fake Nodes' leases: the node lifecycle
			// and taint eviction controllers would mark them NotReady and
			// evict the pods the pod runner is completing.
			"--controllers=*,-node-lifecycle-controller,-taint-eviction-controller",
			"--profiling=false",
			"--v=1",
		},
	})
	if err != nil {
		return err
	}
	// The controller manager serves /healthz with a self-signed certificate.
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe of a self-signed server
	}}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitUntil(wctx, 200*time.Millisecond, "kube-controller-manager /healthz", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz")
	}, p)
}

func (cp *ControlPlane) installCRDs(ctx context.Context) error {
	docs, err := TektonCRDs(cp.cfg.PipelineDir, cp.cfg.TriggersDir)
	if err != nil {
		return err
	}
	if err := applyObjects(ctx, cp.Dynamic, cp.Kube.Discovery(), docs); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitCRDsEstablished(wctx, cp.Dynamic, docs)
}

func (cp *ControlPlane) installTektonConfig(ctx context.Context) error {
	docs, err := TektonConfig(cp.cfg.PipelineDir, cp.cfg.FeatureFlags)
	if err != nil {
		return err
	}
	return applyObjects(ctx, cp.Dynamic, cp.Kube.Discovery(), docs)
}

func (cp *ControlPlane) registerNodes(ctx context.Context) error {
	for _, n := range cp.Nodes {
		if err := registerNode(ctx, cp.Kube, n); err != nil {
			return err
		}
	}
	return nil
}

// registerNode creates a Ready Node with the well-known os/arch labels.
func registerNode(ctx context.Context, kube kubernetes.Interface, n Node) error {
	labels := map[string]string{
		corev1.LabelOSStable:   n.OS,
		corev1.LabelArchStable: n.Arch,
		corev1.LabelHostname:   n.Name,
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: labels}}
	created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", n.Name, err)
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	created.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "fake node of the ciel e2e harness", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: n.Name}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: n.OS, Architecture: n.Arch, KubeletVersion: "v0.0.0-ciel-e2e-podrunner",
			ContainerRuntimeVersion: "ciel-e2e-podrunner://0",
		},
	}
	status := created.Status
	// The node lifecycle controller writes the node too: retry on conflict.
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status = status
		_, err = kube.CoreV1().Nodes().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err == nil {
		// The TaintNodesByCondition admission plugin taints a new node
		// not-ready; the node lifecycle controller (disabled here) would
		// lift it once the node is Ready. Lift it ourselves.
		err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
			cur, err := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var keep []corev1.Taint
			for _, taint := range cur.Spec.Taints {
				if taint.Key != corev1.TaintNodeNotReady {
					keep = append(keep, taint)
				}
			}
			cur.Spec.Taints = keep
			_, err = kube.CoreV1().Nodes().Update(ctx, cur, metav1.UpdateOptions{})
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("marking node %s Ready: %w", n.Name, err)
	}
	return nil
}

func (cp *ControlPlane) startTektonController(ctx context.Context) error {
	ports, err := freePortList(3)
	if err != nil {
		return err
	}
	probes := strconv.Itoa(ports[0])
	v := cp.cfg.PipelineVersion
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "tekton-controller",
		Path: cp.cfg.Binaries["tekton-controller"],
		Args: []string{
			"-kubeconfig", cp.Kubeconfig,
			"-disable-ha",
			"-entrypoint-image", "ghcr.io/tektoncd/pipeline/entrypoint:" + v,
			"-nop-image", "ghcr.io/tektoncd/pipeline/nop:" + v,
			"-sidecarlogresults-image", "ghcr.io/tektoncd/pipeline/sidecarlogresults:" + v,
			"-workingdirinit-image", "ghcr.io/tektoncd/pipeline/workingdirinit:" + v,
			"-shell-image", "cgr.dev/chainguard/busybox:latest",
			"-shell-image-win", "mcr.microsoft.com/powershell:nanoserver",
		},
		Env: []string{
			"SYSTEM_NAMESPACE=" + SystemNamespace,
			"KUBERNETES_MIN_VERSION=v1.28.0",
			"CONFIG_DEFAULTS_NAME=config-defaults",
			"CONFIG_LOGGING_NAME=config-logging",
			"CONFIG_OBSERVABILITY_NAME=config-observability",
			"CONFIG_FEATURE_FLAGS_NAME=feature-flags",
			"CONFIG_LEADERELECTION_NAME=config-leader-election-controller",
			"CONFIG_SPIRE=config-spire",
			"METRICS_DOMAIN=tekton.dev/pipeline",
			"PROBES_PORT=" + probes,
			"METRICS_PROMETHEUS_PORT=" + strconv.Itoa(ports[1]),
			"PROFILING_PORT=" + strconv.Itoa(ports[2]),
		},
	})
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return waitUntil(wctx, 200*time.Millisecond, "tekton-controller probes", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, hc, "http://127.0.0.1:"+probes+"/health")
	}, p)
}

func httpOK(ctx context.Context, hc *http.Client, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ports, err := freePortList(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

func freePorts(n int) (int, int, error) {
	ports, err := freePortList(n)
	if err != nil {
		return 0, 0, err
	}
	return ports[0], ports[1], nil
}

// freePortList returns n distinct ports that were free a moment ago on
// every interface (the sink and Tekton's controller listen on all of them),
// holding each listener open until all are chosen so that none repeats.
func freePortList(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// LookupEtcd returns the etcd server to run: $CIEL_ETCD, or etcd in $PATH
// (Debian package etcd-server).
func LookupEtcd() (string, error) {
	if p := os.Getenv("CIEL_ETCD"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", errors.New("etcd is not installed (Debian: apt-get install etcd-server; or set CIEL_ETCD)")
	}
	return p, nil
}
