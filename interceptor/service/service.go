// Package service runs the ciel GitLab ClusterInterceptor as a process: it
// builds the engine, the Secret reader, the serving certificate, the GitLab
// API client, the policy store, the deduplication cache and the Prometheus
// metrics around an interceptor/server.Server, serves them over HTTP or
// HTTPS, and shuts down cleanly when its context ends.
//
// The `interceptor` command (cmd/interceptor/command) parses flags into a
// Config and calls Run; tests call Run with fake Kubernetes clients.
//
// /healthz says the process is alive; /readyz that policies and the TLS
// certificate are loaded and the server is not shutting down; /metrics is
// Prometheus (with Go runtime and process metrics). When ctx ends, /readyz
// fails for DrainPeriod while the listener still serves, then the listener
// closes and in-flight requests finish within ShutdownTimeout.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/ciel-ci/ciel/interceptor/certs"
	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlabapi"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/interceptor/secrets"
	"github.com/ciel-ci/ciel/interceptor/secrets/kubesecrets"
	"github.com/ciel-ci/ciel/interceptor/server"
	"github.com/ciel-ci/ciel/internal/httpserve"
	"github.com/ciel-ci/ciel/internal/logopt"
)

// Config is what Run serves. The command's flag of the same name sets each
// field; its default is the flag's.
type Config struct {
	// Kube is the cluster: Secrets are read through it and, without
	// CertFile, the serving certificate is kept in a Secret. Nil: local
	// mode (plain HTTP on HTTPAddr, Secrets from SecretDir).
	Kube kubernetes.Interface
	// Dynamic writes the CA into the ClusterInterceptors' caBundle; it is
	// required with Kube unless CertFile is set.
	Dynamic dynamic.Interface

	HTTPAddr            string // local mode address
	HTTPSAddr           string // cluster mode address
	Namespace           string // of the Service and the TLS Secret
	ServiceName         string // the certificate's DNS names
	TLSSecret           string // the Secret keeping the CA and certificate
	ClusterInterceptors []string
	// CertFile and KeyFile serve a certificate from files (cert-manager),
	// reloaded when they change, instead of the managed Secret.
	CertFile, KeyFile string

	Policies   string        // the policy directory
	PolicyPoll time.Duration // how often it is rescanned besides file events
	SecretDir  string        // local mode: Secrets as files DIR/NAME/KEY

	// GitLabURL, when set, completes and lists changed files through the
	// GitLab API with the token GitLabToken returns.
	GitLabURL     string
	GitLabToken   func() (string, error)
	GitLabTimeout time.Duration
	GitLabRetries int
	// AllowedHosts are the GitLabs a payload's URLs may name.
	AllowedHosts []server.GitHost

	RequestTimeout   time.Duration
	MaxBodyBytes     int
	MaxInFlightBytes int64
	CostLimit        uint64
	DedupTTL         time.Duration
	ShutdownTimeout  time.Duration
	DrainPeriod      time.Duration

	// Logger receives the service's logs; nil: silent.
	Logger *slog.Logger
	// Stdout receives one line "listening on SCHEME://ADDR" once the
	// listener is open (tests and scripts read the address from it); nil:
	// nothing is printed.
	Stdout io.Writer
}

// tlsSource is the serving certificate: nil get means plain HTTP.
type tlsSource struct {
	get   func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	ready func() bool
	mgr   *certs.Manager // kept current by Run when managed
}

// Run serves the interceptor until ctx ends, then drains and shuts down;
// it returns nil after a clean shutdown.
func Run(ctx context.Context, c Config) error {
	log := logopt.Or(c.Logger)
	// The interceptor reports no per-request cost, only enforces the limit:
	// expressions the estimate proves within it run untracked.
	eng, err := engine.New(engine.WithCostLimit(c.CostLimit), engine.WithMaxBodyBytes(c.MaxBodyBytes), engine.WithLogger(log),
		engine.WithCostProof())
	if err != nil {
		return err
	}
	metrics := server.NewMetrics()
	hits := func() float64 { h, _ := eng.CacheStats(); return float64(h) }
	metrics.CounterFunc("ciel_cel_program_cache_hits_total", "Compilations answered from the program cache.", hits)

	getter, err := c.secrets(log)
	if err != nil {
		return err
	}
	ts, err := c.certificate(ctx, log)
	if err != nil {
		return err
	}
	api, commits, err := c.gitlabAPI(log, metrics)
	if err != nil {
		return err
	}

	pols, err := policy.NewStore(eng, c.Policies, log, metrics)
	if err != nil {
		log.Error("policies did not load; not ready until they do", "error", err)
	}
	dd, err := dedup.New(dedup.WithTTL(c.DedupTTL))
	if err != nil {
		return err
	}
	metrics.GaugeFunc("ciel_dedup_remembered", "Deliveries remembered or in flight.", func() float64 { return float64(dd.Len()) })
	srv, err := server.New(server.Config{Engine: eng, Policies: pols, Secrets: getter, API: api, Dedup: dd, Metrics: metrics,
		Commits: commits, AllowedHosts: c.AllowedHosts, Logger: log, RequestTimeout: c.RequestTimeout,
		MaxRequestBytes: server.MaxRequestBytesFor(int64(c.MaxBodyBytes)), MaxInFlightBytes: c.MaxInFlightBytes})
	if err != nil {
		return err
	}
	metrics.GaugeFunc("ciel_interceptor_inflight_request_bytes", "Bytes of requests held in memory now (bounded by --max-inflight-bytes).", func() float64 { return float64(srv.InFlightBytes()) })

	var shuttingDown atomic.Bool
	ready := func() []string {
		var problems []string
		if shuttingDown.Load() {
			problems = append(problems, "shutting down")
		}
		if pols.Set() == nil {
			problems = append(problems, "policies not loaded: "+pols.LastError())
		}
		if !ts.ready() {
			problems = append(problems, "TLS certificate not ready")
		}
		return problems
	}
	hs := &http.Server{
		Handler:           handler(srv, metrics, ready),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      c.RequestTimeout + 10*time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	addr := c.HTTPAddr
	if c.Kube != nil {
		addr = c.HTTPSAddr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	if ts.get != nil {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: ts.get}
		ln = tls.NewListener(ln, hs.TLSConfig)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pols.Run(runCtx, c.PolicyPoll)
	if ts.mgr != nil {
		go ts.mgr.Run(runCtx, time.Minute)
	}
	served := httpserve.Start(hs, ln)
	scheme := "http"
	if ts.get != nil {
		scheme = "https"
	}
	log.Info("serving the ciel interceptor", "addr", ln.Addr().String(), "scheme", scheme, "cluster", c.Kube != nil,
		"policies", c.Policies, "gitlab_api", c.GitLabURL != "")
	if c.Stdout != nil {
		fmt.Fprintf(c.Stdout, "listening on %s://%s\n", scheme, ln.Addr())
	}

	select {
	case err := <-served.Failed():
		return err
	case <-ctx.Done():
	}
	return shutdown(served, &shuttingDown, c.DrainPeriod, c.ShutdownTimeout, log)
}

// handler routes the probes, the metrics and the interceptor.
func handler(srv *server.Server, metrics *server.Metrics, ready func() []string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if problems := ready(); len(problems) > 0 {
			http.Error(w, strings.Join(problems, "; "), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	mux.Handle("/", srv)
	return mux
}

// shutdown marks the service not ready for drain while it still serves,
// then stops accepting and lets in-flight requests finish within timeout.
func shutdown(served *httpserve.Server, shuttingDown *atomic.Bool, drain, timeout time.Duration, log *slog.Logger) error {
	shuttingDown.Store(true)
	if drain > 0 {
		// Not ready, still serving: the endpoints controller drops the pod
		// and the EventListener stops sending before the listener closes.
		log.Info("draining: /readyz fails, still serving", "period", drain)
		select {
		case <-time.After(drain):
		case err := <-served.Failed():
			return err
		}
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", timeout)
	if err := served.Shutdown(timeout); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// secrets reads Secrets through the cluster, else from SecretDir, else
// not at all.
func (c *Config) secrets(log *slog.Logger) (secrets.Getter, error) {
	if c.Kube != nil {
		k, err := kubesecrets.NewKubernetes(c.Kube.CoreV1(), kubesecrets.WithLogger(log))
		if err != nil {
			return nil, err
		}
		return k, nil
	}
	if c.SecretDir != "" {
		return secrets.Dir(c.SecretDir), nil
	}
	return nil, nil
}

// certificate is the serving certificate: from CertFile and KeyFile, else
// managed in a Secret in cluster mode, else none (plain HTTP).
func (c *Config) certificate(ctx context.Context, log *slog.Logger) (tlsSource, error) {
	ts := tlsSource{ready: func() bool { return true }}
	if c.CertFile != "" {
		fs, err := certs.NewFileSource(c.CertFile, c.KeyFile, 30*time.Second)
		if err != nil {
			return ts, err
		}
		ts.get = fs.GetCertificate
		return ts, nil
	}
	if c.Kube == nil {
		return ts, nil
	}
	if c.Dynamic == nil {
		return ts, errors.New("building the interceptor: a managed certificate needs a dynamic client")
	}
	mgr, err := certs.NewManager(c.Kube.CoreV1(), c.Dynamic, certs.WithNamespace(c.Namespace), certs.WithServiceName(c.ServiceName),
		certs.WithSecretName(c.TLSSecret), certs.WithClusterInterceptors(c.ClusterInterceptors...), certs.WithLogger(log))
	if err != nil {
		return ts, err
	}
	if err := mgr.Sync(ctx); err != nil {
		log.Error("TLS certificate not ready yet; retrying", "error", err)
	}
	ts.get, ts.ready, ts.mgr = mgr.GetCertificate, mgr.Ready, mgr
	return ts, nil
}

// gitlabAPI builds the GitLab API client when GitLabURL is set and
// registers its counters.
func (c *Config) gitlabAPI(log *slog.Logger, metrics *server.Metrics) (server.ChangedFilesAPI, server.CommitChecker, error) {
	if c.GitLabURL == "" {
		return nil, nil, nil
	}
	if c.GitLabToken == nil {
		return nil, nil, errors.New("building the interceptor: a GitLab URL needs a token")
	}
	token, err := c.GitLabToken()
	if err != nil {
		return nil, nil, err
	}
	src, err := gitlabapi.New(c.GitLabURL, token, gitlabapi.WithTimeout(c.GitLabTimeout),
		gitlabapi.WithRetries(c.GitLabRetries, 200*time.Millisecond, 5*time.Second), gitlabapi.WithLogger(log))
	if err != nil {
		return nil, nil, err
	}
	st := src.Stats()
	metrics.CounterFunc("ciel_gitlab_api_requests_total", "GitLab API requests made to complete changed files.", func() float64 { return float64(st.Requests.Load()) })
	metrics.CounterFunc("ciel_gitlab_api_errors_total", "GitLab API lookups that failed after retries.", func() float64 { return float64(st.Errors.Load()) })
	metrics.CounterFunc("ciel_changed_files_truncated_total", "Changed-files lookups cut by a limit (commits, pages, bytes, time) and answered truncated.", func() float64 { return float64(st.Truncations.Load()) })
	metrics.CounterFunc("ciel_changed_files_cache_hits_total", "Changed-files lookups answered from the cache.", func() float64 { return float64(st.CacheHits.Load()) })
	return src, src, nil
}
