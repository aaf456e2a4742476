package command

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

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
