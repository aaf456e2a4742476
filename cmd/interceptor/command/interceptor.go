// Package command holds the cobra command of the `interceptor` binary:
// the ciel GitLab ClusterInterceptor (package
// github.com/ciel-ci/ciel/interceptor/server) served over HTTPS. The
// command parses flags and builds the cluster clients; the process itself
// (certificates, metrics, server, shutdown) is interceptor/service.Run.
//
// In a cluster (in-cluster config, or --kubeconfig) it reads Secrets
// through the API and serves HTTPS on --https-addr with a certificate it
// keeps in a Secret and whose CA it writes into the caBundle of the `ciel`
// ClusterInterceptor (interceptor/certs), or with --tls-cert-file and
// --tls-key-file (cert-manager), reloaded when they change.
//
// Without a cluster it runs in local mode, for development and tests:
// plain HTTP on --http-addr, Secrets from --secret-dir as files
// NAME/KEY, policies from --policies.
//
// /healthz says the process is alive; /readyz that policies and the TLS
// certificate are loaded and the server is not shutting down; /metrics is
// Prometheus (with Go runtime and process metrics). SIGTERM marks the
// server not ready for --drain-period while it still serves, then stops
// accepting and lets in-flight requests finish within --shutdown-timeout.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/internal/gitlabclient"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/version"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/server"
	"github.com/ciel-ci/ciel/interceptor/service"
)

type options struct {
	httpAddr        string
	httpsAddr       string
	kubeconfig      string
	local           bool
	namespace       string
	serviceName     string
	tlsSecret       string
	interceptors    []string
	certFile        string
	keyFile         string
	policies        string
	policyPoll      time.Duration
	secretDir       string
	gitlabURL       string
	gitlabToken     gitlabclient.TokenFlags
	gitlabTimeout   time.Duration
	gitlabRetries   int
	requestTimeout  time.Duration
	maxBodyBytes    int
	maxInFlight     int64
	costLimit       uint64
	dedupTTL        time.Duration
	shutdownTimeout time.Duration
	drainPeriod     time.Duration
	allowedHosts    []string
	log             logopt.Flags
}

// NewCommand returns the interceptor command.
func NewCommand() *cobra.Command {
	o := options{}
	cmd := &cobra.Command{
		Version: version.String(),
		Use:     "interceptor",
		Short:   "Serve the ciel GitLab ClusterInterceptor for Tekton Triggers",
		Long: `interceptor serves the ciel GitLab ClusterInterceptor: Tekton Triggers'
EventListener posts every GitLab webhook to it; it checks the token and
signature, drops duplicate deliveries, computes the changed files (from the
GitLab API when the payload is truncated) and evaluates a policy or CEL.

In a cluster (in-cluster config or --kubeconfig): HTTPS on --https-addr.
Otherwise (or with --local): plain HTTP on --http-addr, Secrets from
--secret-dir, for development.`,
		Example: `  # local mode, the bundled policies, Secrets from files
  interceptor --local --http-addr 127.0.0.1:8080 --policies policies/ --secret-dir ./secrets`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "local mode: plain HTTP address")
	f.StringVar(&o.httpsAddr, "https-addr", ":8443", "cluster mode: HTTPS address")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: in-cluster config when present, else local mode)")
	f.BoolVar(&o.local, "local", false, "force local mode even in a cluster")
	f.StringVar(&o.namespace, "namespace", envOr("SYSTEM_NAMESPACE", "ciel"), "namespace of the interceptor's Service and TLS Secret (env SYSTEM_NAMESPACE)")
	f.StringVar(&o.serviceName, "service-name", "ciel-interceptor", "the interceptor's Service (the certificate's DNS names)")
	f.StringVar(&o.tlsSecret, "tls-secret", "ciel-interceptor-tls", "Secret keeping the CA and serving certificate")
	f.StringSliceVar(&o.interceptors, "cluster-interceptor", []string{"ciel"}, "ClusterInterceptors whose caBundle to keep current")
	f.StringVar(&o.certFile, "tls-cert-file", "", "serving certificate file (e.g. from cert-manager), reloaded on change; instead of the managed Secret")
	f.StringVar(&o.keyFile, "tls-key-file", "", "serving key file, with --tls-cert-file")
	f.StringVar(&o.policies, "policies", "policies", "policy directory (the mounted ConfigMap), reloaded on change")
	f.DurationVar(&o.policyPoll, "policy-poll", 10*time.Second, "how often the policy directory is checked, besides file events")
	f.StringVar(&o.secretDir, "secret-dir", "", "local mode: Secrets as files DIR/NAME/KEY")
	f.StringVar(&o.gitlabURL, "gitlab-url", "", "GitLab base URL for completing changed files of pushes and listing those of merge requests (e.g. https://gitlab.example.com); empty: payload only")
	o.gitlabToken.Register(f, "file holding a GitLab API token (read_api scope), read at start")
	f.DurationVar(&o.gitlabTimeout, "gitlab-timeout", gitlabapi.DefaultTimeout, "timeout of one GitLab API request")
	f.IntVar(&o.gitlabRetries, "gitlab-retries", gitlabapi.DefaultRetries, "retries of a GitLab API request failing with 429/5xx or a connection error")
	f.DurationVar(&o.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "bound on handling one request")
	f.IntVar(&o.maxBodyBytes, "max-body-bytes", server.DefaultMaxBodyBytes, "largest webhook body accepted (an InterceptorRequest may be twice as large plus 1 MiB, for JSON escapes)")
	f.Int64Var(&o.maxInFlight, "max-inflight-bytes", server.DefaultMaxInFlightBytes, "bytes of requests held in memory at once; a request past it is answered Unavailable unread")
	f.Uint64Var(&o.costLimit, "cost-limit", engine.DefaultCostLimit, "CEL cost limit of one evaluation")
	f.DurationVar(&o.dedupTTL, "dedup-ttl", time.Hour, "how long an accepted delivery is remembered")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take after SIGTERM")
	f.DurationVar(&o.drainPeriod, "drain-period", 5*time.Second, "after SIGTERM, how long /readyz fails while the listener still serves, so that endpoints drop the pod before it stops accepting")
	f.StringSliceVar(&o.allowedHosts, "allowed-git-hosts", nil, "GitLab hosts (host, host:port or host/path) a payload's clone and web URLs may name; default: the host of --gitlab-url; empty: any host (the path must still be the project's)")
	o.log.Register(f)
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// restConfig returns the cluster's config, or nil in local mode.
func (o *options) restConfig() (*rest.Config, error) {
	if o.local {
		return nil, nil
	}
	if o.kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("reading --kubeconfig: %w", err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the in-cluster config: %w", err)
	}
	return c, nil
}

// gitHosts are the GitLabs a payload's URLs may name: --allowed-git-hosts,
// else the host of --gitlab-url, else none (any host).
func (o *options) gitHosts() ([]server.GitHost, error) {
	list := o.allowedHosts
	if len(list) == 0 && o.gitlabURL != "" {
		list = []string{o.gitlabURL}
	}
	hosts := make([]server.GitHost, 0, len(list))
	for _, h := range list {
		gh, err := server.ParseGitHost(h)
		if err != nil {
			return nil, fmt.Errorf("--allowed-git-hosts: %w", err)
		}
		hosts = append(hosts, gh)
	}
	return hosts, nil
}

func (o *options) token() (string, error) {
	if o.gitlabToken.File != "" {
		b, err := os.ReadFile(o.gitlabToken.File)
		if err != nil {
			return "", fmt.Errorf("reading --gitlab-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return o.gitlabToken.FromEnv(os.Getenv)
}

func (o *options) run(ctx context.Context, stdout io.Writer) error {
	log, err := o.log.Logger(os.Stderr)
	if err != nil {
		return err
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	hosts, err := o.gitHosts()
	if err != nil {
		return err
	}
	c := service.Config{
		HTTPAddr: o.httpAddr, HTTPSAddr: o.httpsAddr,
		Namespace: o.namespace, ServiceName: o.serviceName, TLSSecret: o.tlsSecret, ClusterInterceptors: o.interceptors,
		CertFile: o.certFile, KeyFile: o.keyFile,
		Policies: o.policies, PolicyPoll: o.policyPoll, SecretDir: o.secretDir,
		GitLabURL: o.gitlabURL, GitLabToken: o.token, GitLabTimeout: o.gitlabTimeout, GitLabRetries: o.gitlabRetries,
		AllowedHosts:   hosts,
		RequestTimeout: o.requestTimeout, MaxBodyBytes: o.maxBodyBytes, MaxInFlightBytes: o.maxInFlight, CostLimit: o.costLimit,
		DedupTTL: o.dedupTTL, ShutdownTimeout: o.shutdownTimeout, DrainPeriod: o.drainPeriod,
		Logger: log, Stdout: stdout,
	}
	if cfg != nil {
		if c.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return fmt.Errorf("building the Kubernetes client: %w", err)
		}
		if c.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
			return fmt.Errorf("building the Kubernetes client: %w", err)
		}
	}
	return service.Run(ctx, c)
}
