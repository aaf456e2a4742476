// Package promreg is how ciel's components declare and register their
// Prometheus metrics: a counter vector from its name, help and labels
// (CounterVec), a set of collectors registered with one wrapped error
// (Register), and the registry a process serves at /metrics, holding the Go
// runtime and process collectors (NewRegistry).
package promreg

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// CounterVec returns a counter vector named name with help and labels.
func CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// Register registers cs on reg in turn; the first failure is returned,
// saying whose metrics (what) they were.
func Register(reg prometheus.Registerer, what string, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering %s metrics: %w", what, err)
		}
	}
	return nil
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors, for a process's /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
