// Package command holds the cobra command of the `reporter` binary: it
// watches the PipelineRuns ciel's TriggerTemplates create, in one or more
// clusters, and reports them to GitLab as commit statuses (package
// github.com/ciel-ci/ciel/reporter).
//
// --namespace confines the reporter to the namespaces PipelineRuns are
// started in (one set of informers each), --project to GitLab project IDs:
// without them, anyone who can create a labelled PipelineRun in any watched
// namespace can have a status posted on any project the token can reach.
//
// Clusters come from --kubeconfig-dir, one kubeconfig file per cluster,
// followed at runtime (add, change, remove), and from --in-cluster for the
// cluster the reporter runs in. The GitLab token is read from
// --gitlab-token-file (re-read when it changes) or else from the
// environment variable named by --gitlab-token-env (GITLAB_TOKEN).
//
// The HTTP listener (--listen) serves /healthz (the process is alive),
// /readyz (workers running, every cluster with a valid kubeconfig synced
// once) and /metrics (Prometheus). Logs are structured (slog), JSON by
// default. SIGTERM stops the informers and gives pending statuses a last,
// bounded (--drain-timeout) attempt.
package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/internal/gitlabclient"
	"github.com/ciel-ci/ciel/internal/httpserve"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/promreg"
	"github.com/ciel-ci/ciel/internal/version"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	rep "github.com/ciel-ci/ciel/reporter"
	"github.com/ciel-ci/ciel/reporter/gitlabstatus"
	"github.com/ciel-ci/ciel/reporter/kubeconfigs"
	"github.com/ciel-ci/ciel/reporter/status"
)

type options struct {
	kubeconfigDir string
	inCluster     bool
	inClusterName string
	namespaces    []string
	projects      []string

	gitlabURL      string
	token          gitlabclient.TokenFlags
	caFile         string
	gitlabTimeout  time.Duration
	dashboardURL   string
	namePrefix     string
	workers        int
	resync         time.Duration
	rescan         time.Duration
	drainTimeout   time.Duration
	backfill       time.Duration
	record         bool
	listen         string
	log            logopt.Flags
	maxRetryDelay  time.Duration
	shutdownServer time.Duration

	// For tests.
	getenv    func(string) string
	onListen  func(addr string)
	inCfgFunc func() (*rest.Config, error)
}

// NewCommand returns the reporter's root command.
func NewCommand() *cobra.Command {
	return newCommand(&options{getenv: os.Getenv, inCfgFunc: rest.InClusterConfig})
}

func newCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Version: version.String(),
		Use:     "reporter",
		Short:   "Report Tekton PipelineRuns to GitLab as commit statuses",
		Long: `reporter watches the PipelineRuns ciel's TriggerTemplates create (labels
ciel.dev/gitlab-project-id, ciel.dev/gitlab-sha, ciel.dev/pipeline) in one or
more clusters and sets the commit status "ciel/<pipeline>" of the commit they
build: pending, running, then success, failed (naming the failing task and its
reason) or canceled, linked to the run.`,
		Example: `  reporter --kubeconfig-dir /etc/ciel/clusters --in-cluster \
    --gitlab-url https://gitlab.example.com --gitlab-token-file /var/run/secrets/gitlab/token \
    --dashboard-url 'https://tekton.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}'`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.kubeconfigDir, "kubeconfig-dir", "", "directory of kubeconfig files, one per cluster, watched for changes")
	f.BoolVar(&o.inCluster, "in-cluster", false, "also watch the cluster the reporter runs in (service account)")
	f.StringVar(&o.inClusterName, "in-cluster-name", "local", "cluster name of --in-cluster, for logs, metrics and the dashboard URL")
	f.StringSliceVar(&o.namespaces, "namespace", nil, "watch only these namespaces (repeatable or comma-separated; one informer each, so namespaced Roles suffice; default: all namespaces, which needs a ClusterRole and trusts whoever can create a PipelineRun anywhere)")
	f.StringSliceVar(&o.projects, "project", nil, "report only PipelineRuns of these GitLab project IDs (repeatable or comma-separated; default: all)")
	f.StringVar(&o.gitlabURL, "gitlab-url", "", "GitLab base URL, e.g. https://gitlab.example.com (required)")
	o.token.Register(f, "file holding the GitLab access token (api scope), re-read when it changes")
	f.StringVar(&o.caFile, "gitlab-ca-file", "", "PEM file of extra CA certificates for GitLab's TLS certificate")
	f.DurationVar(&o.gitlabTimeout, "gitlab-timeout", 15*time.Second, "timeout of each GitLab request")
	f.StringVar(&o.dashboardURL, "dashboard-url", "", "Go template of the statuses' target_url over .Cluster .Namespace .Name .UID .Pipeline .ProjectID .Project .ProjectURL .SHA .Ref")
	f.StringVar(&o.namePrefix, "status-name-prefix", "ciel/", "prefix of the commit status names (prefix + pipeline)")
	f.IntVar(&o.workers, "workers", 4, "concurrent GitLab posts")
	f.DurationVar(&o.resync, "resync", 10*time.Minute, "informer resync period")
	f.DurationVar(&o.rescan, "rescan", 30*time.Second, "kubeconfig directory rescan period (besides file notifications)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 20*time.Second, "time given at shutdown to post the statuses still pending")
	f.DurationVar(&o.backfill, "backfill-window", 24*time.Hour, "report runs that finished unreported at most this long ago (0: all)")
	f.DurationVar(&o.maxRetryDelay, "max-retry-delay", 5*time.Minute, "cap of the exponential backoff between retries of a status")
	f.BoolVar(&o.record, "record", true, "record the posted state in the annotation ciel.dev/reported-state (needs patch on pipelineruns) so restarts do not repost")
	f.StringVar(&o.listen, "listen", ":8080", "address of /healthz, /readyz and /metrics")
	o.log.Register(f)
	o.shutdownServer = 5 * time.Second
	return cmd
}

func run(ctx context.Context, stderr io.Writer, o *options) error {
	log, err := o.log.Logger(stderr)
	if err != nil {
		return err
	}
	if o.gitlabURL == "" {
		return errors.New("--gitlab-url is required")
	}
	if o.kubeconfigDir == "" && !o.inCluster {
		return errors.New("no cluster to watch: set --kubeconfig-dir, --in-cluster, or both")
	}
	if o.drainTimeout < 0 || o.gitlabTimeout <= 0 || o.maxRetryDelay < time.Second {
		return errors.New("--drain-timeout must not be negative, --gitlab-timeout must be positive, --max-retry-delay at least 1s")
	}
	// client-go logs through klog; send it to the same structured log.
	klog.SetSlogLogger(log.With("component", "client-go"))

	gopts := []gitlabstatus.Option{gitlabstatus.WithLogger(log), gitlabstatus.WithTimeout(o.gitlabTimeout)}
	if o.token.File != "" {
		gopts = append(gopts, gitlabstatus.WithTokenFile(o.token.File))
	} else {
		token, err := o.token.FromEnv(o.getenv)
		if err != nil {
			return err
		}
		gopts = append(gopts, gitlabstatus.WithToken(token))
	}
	if o.caFile != "" {
		gopts = append(gopts, gitlabstatus.WithCAFile(o.caFile))
	}
	poster, err := gitlabstatus.New(o.gitlabURL, gopts...)
	if err != nil {
		return err
	}

	reg := promreg.NewRegistry()
	ropts := []rep.Option{
		rep.WithLogger(log), rep.WithRegisterer(reg), rep.WithNamePrefix(o.namePrefix), rep.WithResync(o.resync),
		rep.WithNamespaces(o.namespaces...), rep.WithProjects(o.projects...), rep.WithWorkers(o.workers), rep.WithDrainTimeout(o.drainTimeout),
		rep.WithBackfillWindow(o.backfill), rep.WithRecord(o.record), rep.WithRetryBackoff(time.Second, o.maxRetryDelay),
	}
	if o.dashboardURL != "" {
		t, err := status.ParseURLTemplate(o.dashboardURL)
		if err != nil {
			return fmt.Errorf("--dashboard-url: %w", err)
		}
		ropts = append(ropts, rep.WithTargetURL(t))
	}
	r, err := rep.New(poster, ropts...)
	if err != nil {
		return err
	}

	kopts := []kubeconfigs.Option{kubeconfigs.WithLogger(log), kubeconfigs.WithRegisterer(reg), kubeconfigs.WithRescanInterval(o.rescan)}
	if o.inCluster {
		cfg, err := o.inCfgFunc()
		if err != nil {
			return fmt.Errorf("--in-cluster: %w", err)
		}
		kopts = append(kopts, kubeconfigs.WithStaticCluster(o.inClusterName, cfg))
	}
	w, err := kubeconfigs.New(o.kubeconfigDir, func(ctx context.Context, c kubeconfigs.Cluster, ready func()) error {
		return r.RunCluster(ctx, c.Name, c.Config, ready)
	}, kopts...)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	srv := &http.Server{
		Handler:           handler(reg, r, w),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("starting", "listen", ln.Addr().String(), "gitlab", o.gitlabURL, "kubeconfig_dir", o.kubeconfigDir, "in_cluster", o.inCluster)
	if o.onListen != nil {
		o.onListen(ln.Addr().String())
	}

	served := httpserve.Start(srv, ln)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return r.Run(gctx) })
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error {
		select {
		case err, ok := <-served.Failed():
			if ok {
				return fmt.Errorf("health and metrics: %w", err)
			}
		case <-gctx.Done():
		}
		return nil
	})
	err = g.Wait()
	// Health and metrics stay up during the drain, then go.
	served.Shutdown(o.shutdownServer) //nolint:errcheck // what matters is the workers' error
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

func handler(reg *prometheus.Registry, r *rep.Reporter, w *kubeconfigs.Watcher) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(rw, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		var b strings.Builder
		err := errors.Join(r.Ready(), w.Ready())
		for _, c := range w.Clusters() {
			fmt.Fprintf(&b, "cluster %s: %s", c.Name, c.State)
			if c.Err != "" {
				fmt.Fprintf(&b, " (%s)", c.Err)
			}
			b.WriteByte('\n')
		}
		if err != nil {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(rw, "not ready: %v\n%s", err, b.String())
			return
		}
		fmt.Fprintf(rw, "ok\n%s", b.String())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
