package promreg

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCounterVec(t *testing.T) {
	c := CounterVec("ciel_test_total", "Test counter.", "result", "code")
	c.WithLabelValues("ok", "200").Add(2)
	if got := testutil.ToFloat64(c.WithLabelValues("ok", "200")); got != 2 {
		t.Errorf("counter = %v, want 2", got)
	}
	want := "# HELP ciel_test_total Test counter.\n# TYPE ciel_test_total counter\nciel_test_total{code=\"200\",result=\"ok\"} 2\n"
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestRegister(t *testing.T) {
	tests := []struct {
		name    string
		cs      func() []prometheus.Collector
		wantErr string
	}{
		{"distinct collectors", func() []prometheus.Collector {
			return []prometheus.Collector{CounterVec("a_total", "A.", "x"), CounterVec("b_total", "B.")}
		}, ""},
		{"a name twice says whose metrics", func() []prometheus.Collector {
			return []prometheus.Collector{CounterVec("a_total", "A.", "x"), CounterVec("a_total", "A.", "x")}
		}, "registering widget metrics: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			err := Register(reg, "widget", tc.cs()...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Register() = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr)):
				t.Fatalf("Register() = %v, want an error starting %q", err, tc.wantErr)
			}
		})
	}
}

func TestNewRegistryHasRuntimeCollectors(t *testing.T) {
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if !seen[name] {
			t.Errorf("%s not gathered", name)
		}
	}
}
