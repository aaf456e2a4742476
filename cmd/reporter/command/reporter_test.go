package command

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestScopeFlags(t *testing.T) {
	o := &options{getenv: func(string) string { return "tok" }, inCfgFunc: func() (*rest.Config, error) { return &rest.Config{Host: "https://127.0.0.1:1"}, nil }}
	cmd := newCommand(o)
	if err := cmd.ParseFlags([]string{"--namespace", "ci,ci-2", "--namespace", "ci-3", "--project", "42", "--project", "43,44"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"ci", "ci-2", "ci-3"}; !slices.Equal(o.namespaces, want) {
		t.Errorf("namespaces %v, want %v", o.namespaces, want)
	}
	if want := []string{"42", "43", "44"}; !slices.Equal(o.projects, want) {
		t.Errorf("projects %v, want %v", o.projects, want)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{args: []string{"--project", "group/app"}, want: "GitLab project ID"},
		{args: []string{"--namespace", "Bad_NS"}, want: `namespace "Bad_NS"`},
	} {
		o := &options{getenv: func(string) string { return "tok" }, inCfgFunc: func() (*rest.Config, error) { return &rest.Config{Host: "https://127.0.0.1:1"}, nil }}
		cmd := newCommand(o)
		var stderr bytes.Buffer
		cmd.SetErr(&stderr)
		cmd.SetArgs(append([]string{"--gitlab-url", "https://gitlab.example.com", "--in-cluster", "--listen", "127.0.0.1:0"}, tc.args...))
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// TestServesProbesAndMetricsThenStops runs the command: /healthz answers,
// /readyz says the cluster (unreachable here) is not synced, /metrics holds
// the reporter's and the Go runtime's metrics, and cancelling the context
// stops the command cleanly.
func TestServesProbesAndMetricsThenStops(t *testing.T) {
	addr := make(chan string, 1)
	o := &options{getenv: func(string) string { return "tok" }, onListen: func(a string) { addr <- a },
		inCfgFunc: func() (*rest.Config, error) { return &rest.Config{Host: "https://127.0.0.1:1"}, nil }}
	cmd := newCommand(o)
	var stderr bytes.Buffer
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"--gitlab-url", "https://gitlab.example.com", "--in-cluster", "--listen", "127.0.0.1:0",
		"--drain-timeout", "0s", "--log-level", "error"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("the command ended before listening: %v\n%s", err, stderr.String())
	}
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/healthz", http.StatusOK, "ok"},
		{"/readyz", http.StatusServiceUnavailable, "cluster local: "},
		{"/metrics", http.StatusOK, "ciel_reporter_statuses_tracked"},
		{"/metrics", http.StatusOK, "go_goroutines"},
	}
	for _, tc := range tests {
		resp, err := http.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %q, want %d containing %q", tc.path, resp.StatusCode, b, tc.code, tc.want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command did not stop")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after the command returned")
	}
}
