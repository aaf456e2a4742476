package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ciel-ci/ciel/internal/promreg"
)

// Metrics are the interceptor's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry      *prometheus.Registry
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	duplicates    prometheus.Counter
	policyReloads *prometheus.CounterVec
	policies      prometheus.Gauge
}

// NewMetrics registers the metrics (and Go/process collectors) on a new
// registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: promreg.NewRegistry(),
		requests: promreg.CounterVec("ciel_interceptor_requests_total",
			"Interceptor requests by result (continue, stop, error) and Triggers status code.", "result", "code"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ciel_interceptor_decision_duration_seconds",
			Help:    "Time from request to response, by result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ciel_interceptor_dedup_hits_total",
			Help: "Deliveries dropped as duplicates of an accepted one.",
		}),
		policyReloads: promreg.CounterVec("ciel_policy_reload_total",
			"Policy directory loads by result (success, error).", "result"),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ciel_policies_loaded",
			Help: "Policies in the serving set.",
		}),
	}
	m.Registry.MustRegister(m.requests, m.latency, m.duplicates, m.policyReloads, m.policies)
	return m
}

// CounterFunc registers a counter read from f (caches, API calls).
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// PolicyReload counts a load of the policy directory (policy.ReloadRecorder).
func (m *Metrics) PolicyReload(ok bool, n int) {
	if m == nil {
		return
	}
	if ok {
		m.policyReloads.WithLabelValues("success").Inc()
		m.policies.Set(float64(n))
		return
	}
	m.policyReloads.WithLabelValues("error").Inc()
}

// GaugeFunc registers a gauge read from f.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}
