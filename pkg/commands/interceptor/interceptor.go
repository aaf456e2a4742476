// Package interceptor holds the cobra command of the `interceptor` binary:
// the ciel GitLab ClusterInterceptor (package
// github.com/ciel-ci/ciel/interceptor/server) served over HTTPS.
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
package interceptor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ciel-ci/ciel/internal/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ciel-ci/ciel/interceptor/certs"
	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/interceptor/secrets"
	"github.com/ciel-ci/ciel/interceptor/secrets/kubesecrets"
	"github.com/ciel-ci/ciel/interceptor/server"
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
	gitlabTokenFile string
	gitlabTokenEnv  string
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
	logFormat       string
	logLevel        string
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
			return o.run(cmd.Context())
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
	f.StringVar(&o.gitlabTokenFile, "gitlab-token-file", "", "file holding a GitLab API token (read_api)")
	f.StringVar(&o.gitlabTokenEnv, "gitlab-token-env", "GITLAB_TOKEN", "environment variable holding the token when no --gitlab-token-file")
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
	f.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (o *options) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	h := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, h)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, h)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", o.logFormat)
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

func (o *options) gitlabToken() (string, error) {
	if o.gitlabTokenFile != "" {
		b, err := os.ReadFile(o.gitlabTokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --gitlab-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv(o.gitlabTokenEnv); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("--gitlab-url needs a token: --gitlab-token-file or $%s", o.gitlabTokenEnv)
}

func (o *options) run(ctx context.Context) error {
	log, err := o.logger()
	if err != nil {
		return err
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	// The interceptor reports no per-request cost, only enforces the limit:
	// expressions the estimate proves within it run untracked.
	eng, err := engine.New(engine.WithCostLimit(o.costLimit), engine.WithMaxBodyBytes(o.maxBodyBytes), engine.WithLogger(log),
		engine.WithCostProof())
	if err != nil {
		return err
	}
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	metrics := server.NewMetrics()
	hits := func() float64 { h, _ := eng.CacheStats(); return float64(h) }
	metrics.CounterFunc("ciel_cel_program_cache_hits_total", "Compilations answered from the program cache.", hits)

	var getter secrets.Getter
	var tlsCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	tlsReady := func() bool { return true }
	var mgr *certs.Manager
	if cfg != nil {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("building the Kubernetes client: %w", err)
		}
		k, err := kubesecrets.NewKubernetes(cs.CoreV1(), kubesecrets.WithLogger(log))
		if err != nil {
			return err
		}
		getter = k
		if o.certFile == "" {
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				return fmt.Errorf("building the Kubernetes client: %w", err)
			}
			mgr, err = certs.NewManager(cs.CoreV1(), dyn, certs.WithNamespace(o.namespace), certs.WithServiceName(o.serviceName),
				certs.WithSecretName(o.tlsSecret), certs.WithClusterInterceptors(o.interceptors...), certs.WithLogger(log))
			if err != nil {
				return err
			}
			if err := mgr.Sync(ctx); err != nil {
				log.Error("TLS certificate not ready yet; retrying", "error", err)
			}
			tlsCert, tlsReady = mgr.GetCertificate, mgr.Ready
		}
	} else if o.secretDir != "" {
		getter = secrets.Dir(o.secretDir)
	}
	if o.certFile != "" {
		fs, err := certs.NewFileSource(o.certFile, o.keyFile, 30*time.Second)
		if err != nil {
			return err
		}
		tlsCert = fs.GetCertificate
	}

	hosts, err := o.gitHosts()
	if err != nil {
		return err
	}
	var api server.ChangedFilesAPI
	var commits server.CommitChecker
	if o.gitlabURL != "" {
		token, err := o.gitlabToken()
		if err != nil {
			return err
		}
		src, err := gitlabapi.New(o.gitlabURL, token, gitlabapi.WithTimeout(o.gitlabTimeout),
			gitlabapi.WithRetries(o.gitlabRetries, 200*time.Millisecond, 5*time.Second), gitlabapi.WithLogger(log))
		if err != nil {
			return err
		}
		st := src.Stats()
		metrics.CounterFunc("ciel_gitlab_api_requests_total", "GitLab API requests made to complete changed files.", func() float64 { return float64(st.Requests.Load()) })
		metrics.CounterFunc("ciel_gitlab_api_errors_total", "GitLab API lookups that failed after retries.", func() float64 { return float64(st.Errors.Load()) })
		metrics.CounterFunc("ciel_changed_files_truncated_total", "Changed-files lookups cut by a limit (commits, pages, bytes, time) and answered truncated.", func() float64 { return float64(st.Truncations.Load()) })
		metrics.CounterFunc("ciel_changed_files_cache_hits_total", "Changed-files lookups answered from the cache.", func() float64 { return float64(st.CacheHits.Load()) })
		api, commits = src, src
	}

	pols, err := policy.NewStore(eng, o.policies, policy.WithLogger(log), policy.WithRecorder(metrics))
	if err != nil {
		log.Error("policies did not load; not ready until they do", "error", err)
	}
	dd, err := dedup.New(dedup.WithTTL(o.dedupTTL))
	if err != nil {
		return err
	}
	metrics.GaugeFunc("ciel_dedup_remembered", "Deliveries remembered or in flight.", func() float64 { return float64(dd.Len()) })
	srv, err := server.New(server.Config{Engine: eng, Policies: pols, Secrets: getter, API: api, Dedup: dd, Metrics: metrics,
		Commits: commits, AllowedHosts: hosts, Logger: log, RequestTimeout: o.requestTimeout,
		MaxRequestBytes: server.MaxRequestBytesFor(int64(o.maxBodyBytes)), MaxInFlightBytes: o.maxInFlight})
	if err != nil {
		return err
	}

	metrics.GaugeFunc("ciel_interceptor_inflight_request_bytes", "Bytes of requests held in memory now (bounded by --max-inflight-bytes).", func() float64 { return float64(srv.InFlightBytes()) })

	var shuttingDown atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		var problems []string
		if shuttingDown.Load() {
			problems = append(problems, "shutting down")
		}
		if pols.Set() == nil {
			problems = append(problems, "policies not loaded: "+pols.LastError())
		}
		if !tlsReady() {
			problems = append(problems, "TLS certificate not ready")
		}
		if len(problems) > 0 {
			http.Error(w, strings.Join(problems, "; "), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	mux.Handle("/", srv)

	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      o.requestTimeout + 10*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	addr := o.httpAddr
	if cfg != nil {
		addr = o.httpsAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	if tlsCert != nil {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: tlsCert}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pols.Run(runCtx, o.policyPoll)
	if mgr != nil {
		go mgr.Run(runCtx, time.Minute)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	scheme := "http"
	if tlsCert != nil {
		scheme = "https"
	}
	log.Info("serving the ciel interceptor", "addr", ln.Addr().String(), "scheme", scheme, "cluster", cfg != nil,
		"policies", o.policies, "gitlab_api", o.gitlabURL != "")
	// Tests and scripts read the address from stdout.
	fmt.Fprintf(os.Stdout, "listening on %s://%s\n", scheme, ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	shuttingDown.Store(true)
	if o.drainPeriod > 0 {
		// Not ready, still serving: the endpoints controller drops the pod
		// and the EventListener stops sending before the listener closes.
		log.Info("draining: /readyz fails, still serving", "period", o.drainPeriod)
		select {
		case <-time.After(o.drainPeriod):
		case err := <-errc:
			return fmt.Errorf("serving: %w", err)
		}
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", o.shutdownTimeout)
	sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	log.Info("stopped")
	return nil
}
