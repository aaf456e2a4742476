package gitlabclient

import (
	"fmt"
	"strings"
)

// TokenFlags are the --gitlab-token-file and --gitlab-token-env flags of a
// command that calls GitLab's API: a token file (a mounted Secret), else an
// environment variable.
type TokenFlags struct {
	File, Env string
}

// stringVarer is what Register needs of a flag set (pflag's, as cobra
// gives it, and the standard library's both have it).
type stringVarer interface {
	StringVar(p *string, name, value, usage string)
}

// Register adds --gitlab-token-file, described by fileHelp (the scope the
// token needs, whether the file is re-read), and --gitlab-token-env
// (default GITLAB_TOKEN) to fs.
func (f *TokenFlags) Register(fs stringVarer, fileHelp string) {
	fs.StringVar(&f.File, "gitlab-token-file", "", fileHelp)
	fs.StringVar(&f.Env, "gitlab-token-env", "GITLAB_TOKEN", "environment variable holding the GitLab token when --gitlab-token-file is not set")
}

// FromEnv returns the token in the variable Env names, space trimmed, for
// when File is not set; an empty one is an error that says both ways to
// give it.
func (f *TokenFlags) FromEnv(getenv func(string) string) (string, error) {
	if t := strings.TrimSpace(getenv(f.Env)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no GitLab token: set --gitlab-token-file or the environment variable %s", f.Env)
}
