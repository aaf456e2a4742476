package reporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ciel-ci/ciel/internal/promreg"
)

// metrics of a Reporter:
//
//	ciel_reporter_status_posts_total{state,result}  posts by state; result is posted, already
//	                                                (GitLab had that state), rejected or error
//	ciel_reporter_gitlab_errors_total{code}         failed GitLab requests by HTTP code, timeout or network
//	ciel_reporter_gitlab_request_duration_seconds   GitLab request latency
//	ciel_reporter_queue_depth                       keys ready in the work queue
//	ciel_reporter_statuses_pending                  statuses whose latest state has not landed yet
//	ciel_reporter_statuses_tracked                  statuses tracked (bounded by WithMaxTracked)
//	ciel_reporter_pipelineruns_ignored_total{reason} labels (not ciel's), superseded (an older
//	                                                run), queue_full, too_old (before the backfill window),
//	                                                project (not in WithProjects), namespace (not in WithNamespaces)
//	ciel_reporter_record_errors_total{cluster}      failed patches of the reported-state annotation
//	ciel_reporter_watch_errors_total{cluster}       informer list/watch errors
type metrics struct {
	posts        *prometheus.CounterVec
	gitlabErrors *prometheus.CounterVec
	postDuration prometheus.Histogram
	ignored      *prometheus.CounterVec
	recordErrors *prometheus.CounterVec
	watchErrors  *prometheus.CounterVec
	gauges       []prometheus.Collector
}

func newMetrics(r *Reporter) *metrics {
	m := &metrics{
		posts: promreg.CounterVec("ciel_reporter_status_posts_total",
			"Commit status posts by state and result (posted, already, rejected, error).", "state", "result"),
		gitlabErrors: promreg.CounterVec("ciel_reporter_gitlab_errors_total",
			"Failed GitLab requests by HTTP status code, timeout, canceled or network.", "code"),
		postDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ciel_reporter_gitlab_request_duration_seconds",
			Help:    "Duration of commit status posts to GitLab.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		ignored: promreg.CounterVec("ciel_reporter_pipelineruns_ignored_total",
			"PipelineRun events not reported, by reason (labels, superseded, queue_full, too_old, project, namespace).", "reason"),
		recordErrors: promreg.CounterVec("ciel_reporter_record_errors_total",
			"Failed patches of the reported-state annotation, per cluster.", "cluster"),
		watchErrors: promreg.CounterVec("ciel_reporter_watch_errors_total",
			"Informer list and watch errors, per cluster.", "cluster"),
	}
	m.gauges = []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ciel_reporter_queue_depth",
			Help: "Keys ready in the work queue (retries waiting for their backoff excluded).",
		}, func() float64 { return float64(r.queue.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ciel_reporter_statuses_pending",
			Help: "Commit statuses whose latest state has not landed in GitLab yet.",
		}, func() float64 { return float64(r.pendingCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ciel_reporter_statuses_tracked",
			Help: "Commit statuses tracked.",
		}, func() float64 {
			r.mu.Lock()
			defer r.mu.Unlock()
			return float64(len(r.entries))
		}),
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	return promreg.Register(reg, "reporter",
		append([]prometheus.Collector{m.posts, m.gitlabErrors, m.postDuration, m.ignored, m.recordErrors, m.watchErrors}, m.gauges...)...)
}
