package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
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

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// SystemNamespace is where Tekton's configuration lives.
const SystemNamespace = "tekton-pipelines"

// ControlPlaneConfig says what StartControlPlane runs and where.
type ControlPlaneConfig struct {
	// RunDir holds the PKI, the kubeconfig, etcd's data, CRD copies and logs.
	RunDir string
	// PidDir holds the supervisor's pid files (see SweepStale).
	PidDir string
	// Binaries maps a program name (see NodeBinaries) to its path; "etcd"
	// is the etcd server.
	Binaries map[string]string
	// Logger receives progress messages (default: discard).
	Logger *slog.Logger
}

// ControlPlane is a running etcd (127.0.0.1), kube-apiserver (bound to
// NodeIP:APIServerPort, authorization Node,RBAC with NodeRestriction) and
// kube-controller-manager (every controller), inside NetNS.
type ControlPlane struct {
	Supervisor *Supervisor
	PKI        *PKI
	// Kubeconfig is a kubeconfig file for the admin user.
	Kubeconfig string
	// RESTConfig authenticates as the admin user (group system:masters).
	RESTConfig *rest.Config
	Kube       kubernetes.Interface
	Dynamic    dynamic.Interface
	// APIServerURL is APIServerURL (https://NodeIP:APIServerPort).
	APIServerURL string
	// EtcdURL is http://127.0.0.1:PORT.
	EtcdURL string
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

// StartControlPlane starts etcd, kube-apiserver and kube-controller-manager.
// It must run inside NetNS (the apiserver binds NodeIP). On error, whatever
// was started is stopped.
func StartControlPlane(ctx context.Context, cfg ControlPlaneConfig) (_ *ControlPlane, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = discardLogger()
	}
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if cfg.Binaries[name] == "" {
			return nil, fmt.Errorf("starting the control plane: no %s binary", name)
		}
	}
	sup, err := NewSupervisor(cfg.RunDir, cfg.PidDir, logger)
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	cp := &ControlPlane{Supervisor: sup, cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()
	err = runPhases(ctx, logger, "control plane", &cp.Phases, []phase{
		{"pki", cp.makePKI},
		{"etcd", cp.startEtcd},
		{"kube-apiserver", cp.startAPIServer},
		{"kube-controller-manager", cp.startControllerManager},
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	return cp, nil
}

// phase is one named step of a start-up.
type phase struct {
	name string
	run  func(context.Context) error
}

// runPhases runs steps in order, records how long each took in phases and
// logs it as a phase of what; the first failure stops them, named by its
// step.
func runPhases(ctx context.Context, logger *slog.Logger, what string, phases *[]Phase, steps []phase) error {
	for _, s := range steps {
		start := time.Now()
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		*phases = append(*phases, Phase{Name: s.name, Duration: time.Since(start)})
		logger.Info(what+" phase done", "phase", s.name, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
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
	// Pods reach the apiserver through the kubernetes Service
	// (KubernetesServiceIP:443 -> NodeIP:APIServerPort), clients at NodeIP.
	if err := p.issue(p.APIServerCert, p.APIServerKey, pkix.Name{CommonName: "kube-apiserver"},
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		[]net.IP{net.ParseIP(NodeIP), net.ParseIP(KubernetesServiceIP), net.IPv4(127, 0, 0, 1)},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc." + ClusterDomain}); err != nil {
		return fmt.Errorf("making the apiserver certificate: %w", err)
	}
	// The apiserver's identity towards kubelets (logs, exec); system:masters
	// passes the kubelets' webhook authorization.
	if _, _, err := p.IssueClient("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"); err != nil {
		return err
	}
	return nil
}

// IssueClient issues a client certificate for user cn in groups orgs, as
// Dir/name.crt and Dir/name.key.
func (p *PKI) IssueClient(name, cn string, orgs ...string) (cert, key string, err error) {
	cert, key = filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
	if err := p.issue(cert, key, pkix.Name{CommonName: cn, Organization: orgs}, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil, nil); err != nil {
		return "", "", fmt.Errorf("issuing the client certificate %s: %w", name, err)
	}
	return cert, key, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	client, peer := etcdClientPort, etcdClientPort+1
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
			"--listen-metrics-urls=http://127.0.0.1:" + strconv.Itoa(etcdClientPort+2),
			"--log-level=warn",
		},
	})
	if err != nil {
		return err
	}
	return waitHealthy(ctx, p, 30*time.Second, 100*time.Millisecond, "etcd /health", cp.EtcdURL+"/health")
}

func (cp *ControlPlane) startAPIServer(ctx context.Context) error {
	port := APIServerPort
	cp.APIServerURL = APIServerURL
	pki := cp.PKI
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "kube-apiserver",
		Path: cp.cfg.Binaries["kube-apiserver"],
		Args: []string{
			"--etcd-servers=" + cp.EtcdURL,
			// Bound to NodeIP so that pods reach it through the kubernetes
			// Service; the default (lease) endpoint reconciler publishes
			// NodeIP:port as that Service's endpoint.
			"--bind-address=" + NodeIP,
			"--advertise-address=" + NodeIP,
			"--secure-port=" + strconv.Itoa(port),
			"--cert-dir=" + filepath.Join(cp.cfg.RunDir, "apiserver-certs"),
			"--tls-cert-file=" + pki.APIServerCert,
			"--tls-private-key-file=" + pki.APIServerKey,
			"--client-ca-file=" + pki.CACert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki.ServiceAccountPubKey,
			"--service-account-signing-key-file=" + pki.ServiceAccountKey,
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--kubelet-client-certificate=" + filepath.Join(pki.Dir, "apiserver-kubelet-client.crt"),
			"--kubelet-client-key=" + filepath.Join(pki.Dir, "apiserver-kubelet-client.key"),
			"--kubelet-preferred-address-types=InternalIP",
			"--allow-privileged=true",
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
	return writeKubeconfigFile(cp.Kubeconfig, "admin", cp.PKI.CACert, cp.PKI.AdminCert, cp.PKI.AdminKey)
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	port := kcmPort
	p, err := cp.Supervisor.Start(ProcessSpec{
		Name: "kube-controller-manager",
		Path: cp.cfg.Binaries["kube-controller-manager"],
		Args: append(componentFlags(cp.Kubeconfig, port, filepath.Join(cp.cfg.RunDir, "kcm-certs")),
			"--use-service-account-credentials=false",
			"--service-account-private-key-file="+cp.PKI.ServiceAccountKey,
			"--root-ca-file="+cp.PKI.CACert,
			"--service-cluster-ip-range="+ServiceCIDR,
			"--profiling=false",
			"--v=1",
		),
	})
	if err != nil {
		return err
	}
	// The controller manager serves /healthz with a self-signed certificate.
	return waitHealthy(ctx, p, 60*time.Second, 200*time.Millisecond, "kube-controller-manager /healthz", "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz")
}

// componentFlags are the flags kube-controller-manager and kube-scheduler
// share: the admin kubeconfig for everything, a self-signed /healthz on
// loopback at port with its certificate in certDir, one instance.
func componentFlags(kubeconfig string, port int, certDir string) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--leader-elect=false",
	}
}

// healthClient probes the components' health endpoints on loopback: plain
// HTTP, or HTTPS with the self-signed certificates the kube components
// make for themselves.
var healthClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health probe of a self-signed server
}}

// waitHealthy polls url every interval until it answers 200 OK, for at
// most timeout, and fails early if p exits.
func waitHealthy(ctx context.Context, p *Process, timeout, interval time.Duration, what, url string) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return waitUntil(wctx, interval, what, func(ctx context.Context) (bool, error) {
		return httpOK(ctx, healthClient, url)
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
