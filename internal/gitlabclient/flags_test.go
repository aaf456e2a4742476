package gitlabclient

import (
	"flag"
	"strings"
	"testing"
)

func TestTokenFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"GITLAB_TOKEN by default, trimmed", nil, map[string]string{"GITLAB_TOKEN": " glpat-1\n"}, "glpat-1", ""},
		{"another variable", []string{"-gitlab-token-env", "GL"}, map[string]string{"GL": "glpat-2", "GITLAB_TOKEN": "glpat-1"}, "glpat-2", ""},
		{"empty variable refused, naming it", []string{"-gitlab-token-env", "GL"}, map[string]string{"GL": "  "}, "", "--gitlab-token-file or the environment variable GL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f TokenFlags
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			f.Register(fs, "token file")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.FromEnv(func(k string) string { return tt.env[k] })
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("FromEnv = %q, %v; want %q, error containing %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
	var f TokenFlags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f.Register(fs, "token file")
	if err := fs.Parse([]string{"-gitlab-token-file", "/run/token"}); err != nil || f.File != "/run/token" {
		t.Errorf("--gitlab-token-file: File = %q, %v", f.File, err)
	}
}
